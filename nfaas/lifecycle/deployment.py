"""One function version's instances: slots, scale-out, instantiation, idle deletion.

EVE025 use case #3: an event takes a free slot of a running instance, or
causes an instantiation while the function is under its instance threshold.
Above the threshold it waits in a bounded queue (``waiters.py``); a full queue
or a passed deadline is a clear ``Overloaded`` answer, never a silent drop.
The instances themselves are described in ``instances.py``. Use case #4:
an instance with no event for its idle period is deleted and its reservation
released. Solution #3 (7.2.3): an instantiation takes a prepared sandbox from
the runtime pool while fewer than ``max_quick_start`` of this function's
instances came from it, and goes the full cold path otherwise.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from nfaas.errors import NfaasError, Overloaded, SandboxStartError
from nfaas.lifecycle.affinity import owner
from nfaas.lifecycle.idle import idle_to_delete, prewarm_count
from nfaas.lifecycle.infra import NodeCapacity
from nfaas.lifecycle.instances import FunctionInstance, FunctionVersion, InstanceState
from nfaas.lifecycle.pools import RuntimePool
from nfaas.lifecycle.waiters import Slot, WaiterQueue
from nfaas.packages.descriptors import Scaling
from nfaas.sandboxes.base import Sandbox, SandboxBackend

if TYPE_CHECKING:
    from nfaas.keepalive.live import KeepWindow

log = logging.getLogger(__name__)

_instance_ids = itertools.count(1)


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
        #: events waiting for a slot, FIFO, the queued ones with a deadline (waiters.py)
        self._waiters = WaiterQueue(
            version.code.ref, self.scaling.queue_timeout_s, give_back=self.release
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._starts: set[asyncio.Task[None]] = set()
        self.retired = False
        self.closed = False
        #: the keep-alive window (by its anchor) already pre-warmed for: once per window,
        #: so a failing pre-warm is not retried every reap
        self._prewarmed_anchor: float | None = None

    # -- the event path ----------------------------------------------------------------

    @property
    def scaling(self) -> Scaling:
        return self.version.descriptor.scaling

    @property
    def overloaded(self) -> dict[str, int]:
        """Events answered ``Overloaded``, by reason (``queue_full``, ``queue_timeout``)."""
        return self._waiters.overloaded

    async def acquire(self, flow: int | None = None) -> Slot:
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
        if len(self._waiters) < slots_coming:
            return await self._waiters.wait(queued=False, flow=flow)
        if (
            not self.retired
            and self._live_count() + self._starting < self.scaling.instance_threshold
        ):
            self._start_instance()
            return await self._waiters.wait(queued=False, flow=flow)
        queued = self._waiters.queued
        if queued >= self.scaling.queue_size:
            raise self._waiters.refuse(
                f"{self.version.code.ref}: {self._live_count()} instances (threshold "
                f"{self.scaling.instance_threshold}) busy and {queued} events queued "
                f"(queue size {self.scaling.queue_size})"
            )
        return await self._waiters.wait(queued=True, flow=flow)

    def release(self, instance: FunctionInstance) -> None:
        """Give the slot back: to the first waiter, or to the pool of free slots."""
        instance.in_flight -= 1
        instance.last_used = time.monotonic()
        if not instance.sandbox.usable:
            self._remove(instance, "failed")
            self._scale_for_waiters()
            return
        if self._hand_over(instance, cold=False):
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

    def _prune_dead(self) -> None:
        for instance in [i for i in self.instances if i.in_flight == 0 and not i.sandbox.usable]:
            self._remove(instance, "failed")

    def _hand_over(self, instance: FunctionInstance, *, cold: bool) -> bool:
        """Give one slot of ``instance`` to the first waiter it may serve, if any."""
        return self._waiters.hand_to(
            instance, cold=cold, members=self._members, any_flow=self.retired
        )

    def _redistribute(self) -> None:
        """An instance left: the flows it held belong to others now, maybe with free slots."""
        if not self._waiters.has_flows:
            return
        for instance in self._members():
            while instance.free_slots > 0 and self._hand_over(instance, cold=False):
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
            self._waiters.fail(exc, self.scaling.concurrency)
            return
        except BaseException as exc:
            self._starting -= 1
            self._waiters.fail(
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
            if not self._hand_over(instance, cold=True):
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
        return not self.instances and not self._starting and not self._waiters

    def counts(self) -> dict[str, int]:
        busy = sum(1 for i in self.instances if i.in_flight > 0)
        return {
            "starting": self._starting,
            "busy": busy,
            "idle": len(self.instances) - busy,
            "queued": self._waiters.queued,
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
        self._waiters.fail(
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
