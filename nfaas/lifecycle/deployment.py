"""One function version's instances: slots, scale-out, the bounded queue, idle deletion.

EVE025 use case #3: an event takes a free slot of a running instance, or
causes an instantiation while the function is under its instance threshold.
Above the threshold it waits in a bounded queue; a full queue or a passed
deadline is a clear ``Overloaded`` answer, never a silent drop. Use case #4:
an instance with no event for its idle period is deleted and its reservation
released. Solution #3 (7.2.3): an instantiation takes a prepared sandbox from
the runtime pool while fewer than ``max_quick_start`` of this function's
instances came from it, and goes the full cold path otherwise.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nfaas.errors import NfaasError, Overloaded, SandboxStartError
from nfaas.lifecycle.affinity import owner
from nfaas.lifecycle.idle import idle_to_delete, prewarm_count
from nfaas.lifecycle.infra import NodeCapacity, Reservation
from nfaas.lifecycle.pools import RuntimePool
from nfaas.packages.descriptors import FunctionDescriptor, Scaling
from nfaas.sandboxes.base import FunctionCode, Sandbox, SandboxBackend

if TYPE_CHECKING:
    from nfaas.keepalive.live import KeepWindow

log = logging.getLogger(__name__)

_instance_ids = itertools.count(1)


@dataclass(frozen=True)
class FunctionVersion:
    """A deployable function version: its descriptor, code on disk and where it runs."""

    tenant: str
    descriptor: FunctionDescriptor
    code: FunctionCode
    backend: str
    pool_id: str | None

    @property
    def app(self) -> str:
        return self.code.app

    @property
    def name(self) -> str:
        return self.code.name

    @property
    def version(self) -> str:
        return self.code.version

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.code.app, self.code.name, self.code.version)


class InstanceState(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    DELETED = "deleted"


@dataclass(eq=False)
class FunctionInstance:
    """One loaded sandbox serving one function version."""

    id: str
    version: FunctionVersion
    sandbox: Sandbox
    reservation: Reservation
    from_pool: bool
    init_seconds: float
    created_at: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)
    in_flight: int = 0
    served: int = 0
    state: InstanceState = InstanceState.READY
    #: created ahead of any event, at the start of a keep-alive policy's window
    prewarmed: bool = False

    @property
    def free_slots(self) -> int:
        if self.state is not InstanceState.READY or not self.sandbox.usable:
            return 0
        return self.version.descriptor.scaling.concurrency - self.in_flight


@dataclass(eq=False)
class _Waiter:
    future: asyncio.Future[tuple[FunctionInstance, bool]]
    #: counted against queue_size (it waits for a slot, not for an instance it caused)
    queued: bool
    #: the event's flow under flow affinity: only the flow's instance may serve it
    flow: int | None = None


class FunctionDeployment:
    """The instances of one function version and the events waiting for them."""

    def __init__(
        self,
        version: FunctionVersion,
        backend: SandboxBackend,
        pool: RuntimePool | None,
        capacity: NodeCapacity,
        *,
        on_change: Callable[[str, FunctionInstance], None] | None = None,
    ) -> None:
        self.version = version
        self._backend = backend
        self._pool = pool
        self._capacity = capacity
        self._on_change = on_change or (lambda kind, inst: None)
        self.instances: list[FunctionInstance] = []
        self._starting = 0
        #: instances (starting or running) whose sandbox came from the pool (7.2.3)
        self._quick_started = 0
        #: events waiting for a slot, FIFO; a waiter leaves the deque whenever its future
        #: is settled (handed a slot, failed, abandoned), so every waiter here is pending
        self._waiters: deque[_Waiter] = deque()
        #: how many of them are queued (counted against queue_size)
        self._queued = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._starts: set[asyncio.Task[None]] = set()
        self.retired = False
        self.closed = False
        self.overloaded = {"queue_full": 0, "queue_timeout": 0}
        #: the keep-alive window (by its anchor) already pre-warmed for: once per window,
        #: so a failing pre-warm is not retried every reap
        self._prewarmed_anchor: float | None = None

    # -- the event path ----------------------------------------------------------------

    @property
    def scaling(self) -> Scaling:
        return self.version.descriptor.scaling

    async def acquire(self, flow: int | None = None) -> tuple[FunctionInstance, bool]:
        """A slot on an instance, and whether the event waited for that instance to be created.

        With a ``flow`` (flow affinity, ``affinity.py``) only the instance the flow belongs
        to serves the event: when it is busy the event waits for one of its slots (or for a
        new instance the flow moves to), never taking another instance's free slot.
        """
        instance = self._free_instance() if flow is None else self._flow_instance(flow)
        if instance is not None:
            instance.in_flight += 1
            return instance, False
        # An instance whose sandbox died while idle holds no slot but still counts
        # against the threshold: delete it now, not after its idle period.
        self._prune_dead()
        slots_coming = self._starting * self.scaling.concurrency
        if self._pending() < slots_coming:
            return await self._wait(queued=False, flow=flow)
        if (
            not self.retired
            and self._live_count() + self._starting < self.scaling.instance_threshold
        ):
            self._start_instance()
            return await self._wait(queued=False, flow=flow)
        queued = self._queued
        if queued >= self.scaling.queue_size:
            self.overloaded["queue_full"] += 1
            raise Overloaded(
                f"{self.version.code.ref}: {self._live_count()} instances (threshold "
                f"{self.scaling.instance_threshold}) busy and {queued} events queued "
                f"(queue size {self.scaling.queue_size})",
                reason="queue_full",
            )
        return await self._wait(queued=True, flow=flow)

    def release(self, instance: FunctionInstance) -> None:
        """Give the slot back: to the first waiter, or to the pool of free slots."""
        instance.in_flight -= 1
        instance.last_used = time.monotonic()
        if not instance.sandbox.usable:
            self._remove(instance, "failed")
            self._scale_for_waiters()
            return
        if self._hand_to_waiter(instance, cold=False):
            return
        if instance.state is InstanceState.DRAINING and instance.in_flight == 0:
            self._remove(instance, "drained")

    def _free_instance(self) -> FunctionInstance | None:
        best: FunctionInstance | None = None
        for instance in self.instances:
            slots = instance.free_slots
            # Most recently used first keeps the others idle, so that they can be reaped.
            if slots > 0 and (best is None or instance.last_used > best.last_used):
                best = instance
        return best

    def _members(self) -> list[FunctionInstance]:
        """The instances flows are placed on: ready, with a usable sandbox."""
        return [i for i in self.instances if i.state is InstanceState.READY and i.sandbox.usable]

    def _flow_instance(self, flow: int) -> FunctionInstance | None:
        target = owner(flow, self._members())
        return target if target is not None and target.free_slots > 0 else None

    def _live_count(self) -> int:
        return sum(1 for i in self.instances if i.state is not InstanceState.DELETED)

    def _pending(self) -> int:
        return len(self._waiters)

    def _prune_dead(self) -> None:
        for instance in [i for i in self.instances if i.in_flight == 0 and not i.sandbox.usable]:
            self._remove(instance, "failed")

    async def _wait(self, *, queued: bool, flow: int | None) -> tuple[FunctionInstance, bool]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[FunctionInstance, bool]] = loop.create_future()
        waiter = _Waiter(future, queued, flow)
        self._waiters.append(waiter)
        self._queued += queued
        # A queued event waits at most queue_timeout_s; one waiting for an instance it
        # caused is bounded by the instantiation itself.
        timer = (
            loop.call_later(self.scaling.queue_timeout_s, self._expire, waiter) if queued else None
        )
        try:
            return await future
        except asyncio.CancelledError:
            self._abandon(waiter)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _expire(self, waiter: _Waiter) -> None:
        if waiter.future.done():
            return
        self._waiters.remove(waiter)
        self._queued -= waiter.queued
        self.overloaded["queue_timeout"] += 1
        waiter.future.set_exception(
            Overloaded(
                f"{self.version.code.ref}: no instance became free within "
                f"{self.scaling.queue_timeout_s:g} s",
                reason="queue_timeout",
            )
        )

    def _abandon(self, waiter: _Waiter) -> None:
        try:
            self._waiters.remove(waiter)
            self._queued -= waiter.queued
        except ValueError:
            pass
        if (
            waiter.future.done()
            and not waiter.future.cancelled()
            and waiter.future.exception() is None
        ):
            # A slot was handed over at the very moment we gave up: give it back.
            instance, _ = waiter.future.result()
            self.release(instance)
        else:
            waiter.future.cancel()

    def _hand_to_waiter(self, instance: FunctionInstance, *, cold: bool) -> bool:
        while (waiter := self._next_waiter(instance)) is not None:
            self._waiters.remove(waiter)
            self._queued -= waiter.queued
            if waiter.future.done():
                continue
            instance.in_flight += 1
            waiter.future.set_result((instance, cold))
            return True
        return False

    def _next_waiter(self, instance: FunctionInstance) -> _Waiter | None:
        """The first waiter ``instance`` may serve: any, except one whose flow is elsewhere."""
        members: list[FunctionInstance] | None = None
        for waiter in self._waiters:
            if waiter.flow is None or self.retired:
                return waiter
            members = self._members() if members is None else members
            if owner(waiter.flow, members) is instance:
                return waiter
        return None

    def _redistribute(self) -> None:
        """An instance left: the flows it held belong to others now, maybe with free slots."""
        if not any(w.flow is not None for w in self._waiters):
            return
        for instance in self._members():
            while instance.free_slots > 0 and self._hand_to_waiter(instance, cold=False):
                pass

    # -- instantiation -------------------------------------------------------------------

    def _start_instance(self, *, prewarm: bool = False) -> None:
        # Counted now, not when the task first runs, so that a burst of events
        # arriving in the same loop iteration does not start too many instances.
        self._starting += 1
        task = self._spawn(self._instantiate(prewarm))
        self._starts.add(task)
        task.add_done_callback(self._starts.discard)

    async def _instantiate(self, prewarm: bool = False) -> None:
        try:
            instance = await self._create_instance()
            instance.prewarmed = prewarm
        except NfaasError as exc:
            self._starting -= 1
            if prewarm:
                log.warning("%s: pre-warming failed: %s", self.version.code.ref, exc.detail)
            self._fail_waiters(exc, self.scaling.concurrency)
            return
        except BaseException as exc:
            self._starting -= 1
            self._fail_waiters(
                SandboxStartError(f"{self.version.code.ref}: instantiation failed: {exc!r}"),
                self.scaling.concurrency,
            )
            raise
        self._starting -= 1
        if self.closed:
            # Shut down while this instance was loading: it never serves.
            self._capacity.release(instance.reservation)
            if instance.from_pool:
                self._quick_started -= 1
            await asyncio.shield(instance.sandbox.aclose())
            return
        self.instances.append(instance)
        self._on_change("created", instance)
        for _ in range(self.scaling.concurrency):
            if not self._hand_to_waiter(instance, cold=True):
                break

    async def _create_instance(self) -> FunctionInstance:
        version = self.version
        res = version.descriptor.resources
        instance_id = f"{version.name}-{next(_instance_ids)}"
        reservation = self._capacity.reserve(res.memory_mb, res.cpu, f"instance {instance_id}")
        started = time.monotonic()
        sandbox: Sandbox | None = None
        from_pool = False
        try:
            # EVE025 7.2.3: the quick-start count caps how many instances come from the
            # pool; counted when taken, so overlapping instantiations cannot exceed it.
            if self._pool is not None and self._quick_started < self.scaling.max_quick_start:
                sandbox = self._pool.take()
                from_pool = sandbox is not None
                if from_pool:
                    self._quick_started += 1
            if sandbox is None:
                sandbox = self._backend.create()
                await sandbox.prepare()
            await sandbox.load(version.code)
        except BaseException:
            self._capacity.release(reservation)
            if from_pool:
                self._quick_started -= 1
            if sandbox is not None:
                await asyncio.shield(sandbox.aclose())
            raise
        return FunctionInstance(
            id=instance_id,
            version=version,
            sandbox=sandbox,
            reservation=reservation,
            from_pool=from_pool,
            init_seconds=time.monotonic() - started,
        )

    def _fail_waiters(self, exc: BaseException, count: int) -> None:
        while count > 0 and self._waiters:
            waiter = self._waiters.popleft()
            self._queued -= waiter.queued
            if not waiter.future.done():
                waiter.future.set_exception(exc)
                count -= 1

    def _scale_for_waiters(self) -> None:
        """After losing an instance, start replacements for the events still waiting."""
        while (
            not self.retired
            and len(self._waiters) > self._starting * self.scaling.concurrency
            and self._live_count() + self._starting < self.scaling.instance_threshold
        ):
            self._start_instance()

    # -- deletion ------------------------------------------------------------------------

    def _remove(self, instance: FunctionInstance, reason: str) -> None:
        if instance.state is InstanceState.DELETED:
            return
        instance.state = InstanceState.DELETED
        self.instances.remove(instance)
        if instance.from_pool:
            self._quick_started -= 1
        self._capacity.release(instance.reservation)
        self._on_change(f"deleted:{reason}", instance)
        self._spawn(instance.sandbox.aclose())
        self._redistribute()

    def reap_idle(self, now: float, window: KeepWindow | None = None) -> int:
        """Delete idle instances the idle period or the policy's window lets go (use case #4),
        and dead ones; how many."""
        idle = [i for i in self.instances if i.in_flight == 0]
        removed = 0
        for instance in [i for i in idle if not i.sandbox.usable or self.retired]:
            self._remove(instance, "failed" if not instance.sandbox.usable else "drained")
            removed += 1
        usable = [i for i in idle if i.state is not InstanceState.DELETED]
        for instance, reason in idle_to_delete(usable, now, self.scaling.idle_period_s, window):
            self._remove(instance, reason)
            removed += 1
        return removed

    def prewarm(self, now: float, window: KeepWindow | None) -> int:
        """Start instances ahead of events when the policy's window asks for it; how many."""
        if self.retired or self.closed or window is None or window.anchor == self._prewarmed_anchor:
            return 0
        count = prewarm_count(
            window, now, self._live_count(), self._starting, self.scaling.instance_threshold
        )
        if count:
            self._prewarmed_anchor = window.anchor
        for _ in range(count):
            self._start_instance(prewarm=True)
        return count

    def retire(self) -> None:
        """A newer version took over (7.2.5): serve no new instance, drain the running ones."""
        self.retired = True
        for instance in list(self.instances):
            instance.state = InstanceState.DRAINING
            if instance.in_flight == 0:
                self._remove(instance, "drained")

    @property
    def idle(self) -> bool:
        return not self.instances and not self._starting and not self._pending()

    def counts(self) -> dict[str, int]:
        busy = sum(1 for i in self.instances if i.in_flight > 0)
        return {
            "starting": self._starting,
            "busy": busy,
            "idle": len(self.instances) - busy,
            "queued": self._queued,
        }

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self, timeout_s: float = 10.0) -> None:
        """Delete every instance, stop instantiations, fail every waiter; idempotent, bounded."""
        self.retired = True
        self.closed = True
        self._fail_waiters(
            Overloaded("the platform is shutting down", reason="shutdown"), len(self._waiters)
        )
        for instance in list(self.instances):
            self._remove(instance, "shutdown")
        for task in list(self._starts):
            task.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=timeout_s)
            for task in pending:
                log.warning(
                    "%s: a sandbox did not close within %g s", self.version.code.ref, timeout_s
                )
                task.cancel()
