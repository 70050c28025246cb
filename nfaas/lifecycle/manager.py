"""Serverless Function Management (EVE025 use cases #3, #4; solution #3).

Turns "run this event on that function version" into a slot on an instance,
creating and deleting instances as events come and go, and records what every
invocation did. It owns the deployments (one per function version), the idle
reaper, and nothing else: which version an event goes to is the
distributor's choice, where code comes from is the catalog's.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from nfaas.errors import (
    EventTooLarge,
    FunctionCrashed,
    FunctionFailure,
    FunctionOutOfMemory,
    FunctionRaised,
    FunctionTimeout,
    InsufficientCapacity,
    NfaasError,
    Overloaded,
    SandboxStartError,
)
from nfaas.keepalive.live import KeepAliveController
from nfaas.lifecycle.affinity import flow_of
from nfaas.lifecycle.deployment import FunctionDeployment
from nfaas.lifecycle.infra import NodeCapacity
from nfaas.lifecycle.instances import FunctionInstance, FunctionVersion
from nfaas.lifecycle.pools import RuntimePool
from nfaas.sandboxes.base import Event, Result, SandboxBackend
from nfaas.telemetry.metrics import Telemetry, VersionKey

log = logging.getLogger(__name__)

_OUTCOME = {
    FunctionRaised: "raised",
    FunctionCrashed: "crashed",
    FunctionTimeout: "timeout",
    FunctionOutOfMemory: "oom",
    Overloaded: "overloaded",
    SandboxStartError: "start_failed",
    InsufficientCapacity: "no_capacity",
    EventTooLarge: "too_large",
}


def outcome_of(exc: BaseException) -> str:
    for cls, name in _OUTCOME.items():
        if isinstance(exc, cls):
            return name
    return "error"


class ManagerState(enum.Enum):
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class KeepAliveInfo:
    """A function version's keep-alive decision, as the API and metrics show it."""

    app: str
    function: str
    version: str
    tenant: str
    policy: str
    #: which rule of the policy decided (e.g. histogram, default)
    mode: str
    prewarm_s: float
    keepalive_s: float
    ready: int
    #: seconds from now: when instances may be loaded from, and until when
    window_start_in_s: float
    window_end_in_s: float


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    id: str
    tenant: str
    app: str
    function: str
    version: str
    backend: str
    state: str
    in_flight: int
    served: int
    from_pool: bool
    init_ms: float
    idle_s: float
    age_s: float
    memory_mb: int


class FunctionManager:
    def __init__(
        self,
        capacity: NodeCapacity,
        telemetry: Telemetry,
        backend_for: Callable[[str], SandboxBackend],
        pool_for: Callable[[FunctionVersion], RuntimePool | None],
        *,
        reap_interval_s: float = 0.5,
        keepalive: KeepAliveController | None = None,
    ) -> None:
        self._capacity = capacity
        #: each function's keep-alive policy, for those whose descriptor names one
        self.keepalive = keepalive or KeepAliveController()
        self._telemetry = telemetry
        self._backend_for = backend_for
        self._pool_for = pool_for
        self._reap_interval = reap_interval_s
        self._deployments: dict[VersionKey, FunctionDeployment] = {}
        #: retired deployments whose instances still finish what they hold (7.2.5)
        self._draining: list[FunctionDeployment] = []
        self._reaper: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[str, FunctionInstance], None]] = []
        self.state = ManagerState.RUNNING
        telemetry.watch_instances(self._instance_counts)
        telemetry.watch_keepalive(self._keepalive_gauges)

    def start(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap_loop(), name="idle-reaper")

    def subscribe(self, listener: Callable[[str, FunctionInstance], None]) -> None:
        """Be told of every instance created and deleted (for logs and notifications)."""
        self._listeners.append(listener)

    def _changed(self, kind: str, instance: FunctionInstance) -> None:
        if kind == "deleted:keepalive" or (kind == "created" and instance.prewarmed):
            self._telemetry.keepalive_action(
                instance.version.key, "unload" if kind != "created" else "prewarm"
            )
        if kind == "created":
            self._telemetry.instance_created(
                instance.version.key,
                instance.version.backend,
                instance.init_seconds,
                instance.from_pool,
            )
        log.info(
            "instance %s of %s %s (%s, %s)",
            instance.id,
            instance.version.code.ref,
            kind,
            instance.version.backend,
            f"init {instance.init_seconds * 1000:.1f} ms"
            + (", from pool" if instance.from_pool else ""),
        )
        for listener in self._listeners:
            listener(kind, instance)

    def deployment(self, version: FunctionVersion) -> FunctionDeployment:
        deployment = self._deployments.get(version.key)
        if (
            deployment is None
            or deployment.retired
            or (deployment.version is not version and deployment.version != version)
        ):
            if deployment is not None:
                # A version coming back (a rollback) gets fresh instances; the old
                # deployment only drains.
                deployment.retire()
                self._draining.append(deployment)
            deployment = FunctionDeployment(
                version,
                self._backend_for(version.backend),
                self._pool_for(version),
                self._capacity,
                on_change=self._changed,
            )
            self._deployments[version.key] = deployment
        return deployment

    async def invoke(
        self, version: FunctionVersion, event: Event, *, arrival: float | None = None
    ) -> Result:
        """Run ``event`` on ``version``: take a slot (maybe cold-starting), invoke, record."""
        arrival = time.monotonic() if arrival is None else arrival
        key = version.key
        if self.state is not ManagerState.RUNNING:
            raise Overloaded("the platform is shutting down", reason="shutdown")
        self.keepalive.observe(version, arrival)
        deployment = self.deployment(version)
        flow = flow_of(event) if version.descriptor.scaling.affinity == "flow" else None
        try:
            instance, cold = await deployment.acquire(flow)
        except NfaasError as exc:
            self._telemetry.record(key, event.trigger, outcome_of(exc))
            raise
        started = time.monotonic()
        try:
            result = await instance.sandbox.invoke(event)
        except FunctionFailure as exc:
            self._telemetry.record(
                key,
                event.trigger,
                outcome_of(exc),
                duration=time.monotonic() - started,
                cold_start=(started - arrival) if cold else None,
                queue_wait=None if cold else started - arrival,
            )
            if exc.fatal:
                log.warning(
                    "%s on %s: %s; replacing it", type(exc).__name__, instance.id, exc.detail
                )
            raise
        except NfaasError as exc:
            self._telemetry.record(key, event.trigger, outcome_of(exc))
            raise
        except BaseException:
            self._telemetry.record(key, event.trigger, "error")
            raise
        finally:
            instance.served += 1
            deployment.release(instance)
        finished = time.monotonic()
        first_line = result.first_line_at if result.first_line_at is not None else started
        self.keepalive.completed(version, finished - first_line)
        self._telemetry.record(
            key,
            event.trigger,
            "ok",
            duration=finished - first_line,
            cold_start=(first_line - arrival) if cold else None,
            queue_wait=None if cold else started - arrival,
        )
        return result

    def retire(self, key: VersionKey) -> None:
        """A version no longer receives events: drain its instances (EVE025 7.2.5)."""
        deployment = self._deployments.pop(key, None)
        if deployment is not None:
            deployment.retire()
            self._draining.append(deployment)

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(self._reap_interval)
            try:
                await self.keepalive.refresh()
            except Exception:  # idle deletion goes on with the decisions it has
                log.exception("refreshing keep-alive decisions failed")
            self.reap_idle()

    def reap_idle(self, now: float | None = None) -> int:
        """Delete idle instances, and pre-warm where a policy asks; how many were deleted."""
        now = time.monotonic() if now is None else now
        removed = 0
        for deployment in self._deployments.values():
            window = self.keepalive.window(deployment.version)
            removed += deployment.reap_idle(now, window)
            deployment.prewarm(now, window)
        for deployment in list(self._draining):
            removed += deployment.reap_idle(now)
            if deployment.idle:
                self._draining.remove(deployment)
        return removed

    def instances(self) -> Iterator[InstanceInfo]:
        now = time.monotonic()
        for deployment in self.deployments():
            for inst in deployment.instances:
                v = inst.version
                yield InstanceInfo(
                    id=inst.id,
                    tenant=v.tenant,
                    app=v.app,
                    function=v.name,
                    version=v.version,
                    backend=v.backend,
                    state="busy" if inst.in_flight else inst.state.value,
                    in_flight=inst.in_flight,
                    served=inst.served,
                    from_pool=inst.from_pool,
                    init_ms=round(inst.init_seconds * 1000, 3),
                    idle_s=round(now - inst.last_used, 3) if not inst.in_flight else 0.0,
                    age_s=round(now - inst.created_at, 3),
                    memory_mb=inst.reservation.memory_mb,
                )

    def keepalive_decisions(self, now: float | None = None) -> Iterator[KeepAliveInfo]:
        """The current decision of every serving version whose descriptor names a policy."""
        now = time.monotonic() if now is None else now
        for deployment in list(self._deployments.values()):
            v = deployment.version
            window = self.keepalive.window(v)
            if window is None:
                continue
            d = window.decision
            yield KeepAliveInfo(
                app=v.app,
                function=v.name,
                version=v.version,
                tenant=v.tenant,
                policy=window.policy,
                mode=d.mode,
                prewarm_s=d.prewarm_min * 60.0,
                keepalive_s=d.keepalive_min * 60.0,
                ready=d.ready,
                window_start_in_s=round(window.start - now, 3),
                window_end_in_s=round(window.end - now, 3),
            )

    def _keepalive_gauges(self) -> Iterator[tuple[VersionKey, str, str, float, float, int]]:
        for info in self.keepalive_decisions():
            key = (info.app, info.function, info.version)
            yield key, info.policy, info.mode, info.prewarm_s, info.keepalive_s, info.ready

    def instance(self, instance_id: str) -> FunctionInstance | None:
        for deployment in self.deployments():
            for inst in deployment.instances:
                if inst.id == instance_id:
                    return inst
        return None

    def _instance_counts(self) -> Iterator[tuple[VersionKey, str, str, int]]:
        for deployment in self.deployments():
            for state, count in deployment.counts().items():
                if deployment.retired and state in ("busy", "idle"):
                    state = "draining"
                yield deployment.version.key, deployment.version.backend, state, count

    def deployments(self) -> list[FunctionDeployment]:
        """Serving deployments, then draining ones."""
        return [*self._deployments.values(), *self._draining]

    async def aclose(self, grace_s: float = 5.0) -> None:
        """Stop taking events, let running ones finish for ``grace_s``, then delete everything."""
        if self.state is ManagerState.CLOSED:
            return
        self.state = ManagerState.CLOSING
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(  # noqa: ASYNC110 (polls counters, bounded)
            i.in_flight for d in self.deployments() for i in d.instances
        ):
            await asyncio.sleep(0.02)
        await asyncio.gather(*(d.aclose() for d in self.deployments()))
        self._deployments.clear()
        self._draining.clear()
        self.state = ManagerState.CLOSED
