"""The one place that wires nfaas together (house rule 5).

``Platform`` builds every component from a ``Config``, starts them in order,
keeps the trigger service and function management in step with the catalog
(``reconcile``), and shuts down in the reverse order within a bound: stop
accepting events, let running invocations finish, delete instances, drain
pools, stop backends, close the store.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from types import TracebackType
from typing import Self

from nfaas.api.auth import Auth
from nfaas.canary.mapping import VersionMapping
from nfaas.canary.watcher import RollbackWatcher
from nfaas.canary.window import OutcomeWindows
from nfaas.catalog.blobs import BlobStore
from nfaas.catalog.functions import FunctionCatalog
from nfaas.catalog.onboarding import Onboarding
from nfaas.catalog.store import PackageRecord, PoolRecord, StateStore
from nfaas.config import Config
from nfaas.ebpf.manager import EbpfManager, default_ledger, version_finder
from nfaas.ebpf.metrics import EbpfCollector
from nfaas.errors import BackendUnavailable, BindingConflict, InvalidRequest, NotFound
from nfaas.lifecycle.infra import NodeCapacity, measured_capacity
from nfaas.lifecycle.instances import FunctionVersion
from nfaas.lifecycle.manager import FunctionManager
from nfaas.lifecycle.pools import RuntimePool
from nfaas.notifications.events import EventLog
from nfaas.notifications.service import Notifications
from nfaas.notifications.sources import instance_events, package_events
from nfaas.packages.archive import ArchiveLimits
from nfaas.packages.descriptors import FunctionDescriptor
from nfaas.runtimes.repository import RuntimeRepository
from nfaas.sandboxes.base import SandboxBackend
from nfaas.sandboxes.registry import BACKENDS, backend_class
from nfaas.telemetry.metrics import Telemetry
from nfaas.telemetry.resources import ResourceCollector, ResourceSources
from nfaas.triggers.base import TriggerBinding
from nfaas.triggers.distributor import Distributor
from nfaas.triggers.router import Router
from nfaas.triggers.service import TriggerService, bindings_of

log = logging.getLogger(__name__)


class PlatformState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class Platform:
    def __init__(
        self, config: Config, *, backends: dict[str, SandboxBackend] | None = None
    ) -> None:
        self.config = config
        self.state = PlatformState.NEW
        #: backends given by the caller (tests) are used as they are and not closed here
        self._given = dict(backends or {})
        self._backends: dict[str, SandboxBackend] = dict(self._given)
        self._backend_lock = asyncio.Lock()
        self.pools: dict[str, RuntimePool] = {}
        self._reconcile_lock = asyncio.Lock()
        self.bindings: list[TriggerBinding] = []

        data = config.data_dir
        data.mkdir(parents=True, exist_ok=True)
        self.store = StateStore(data / "state.db")
        self.blobs = BlobStore(data / "store")
        self.runtimes = RuntimeRepository(self.store, [*BACKENDS, *self._given])
        self.telemetry = Telemetry()
        self.capacity = self._capacity()
        self.manager = FunctionManager(
            self.capacity,
            self.telemetry,
            self.backend_now,
            self._pool_for,
            reap_interval_s=config.reap_interval_s,
        )
        self.catalog = FunctionCatalog(
            self.store, self.blobs, data / "functions", self._code_is_file
        )
        self.distributor = Distributor()
        self.router = Router(
            self.catalog,
            self.distributor,
            self.manager,
            self.telemetry,
            max_event_bytes=config.max_event_bytes,
        )
        self.triggers = TriggerService(self.router, self.telemetry, host=config.trigger_host)
        self.auth = Auth(self.store)
        self.onboarding = Onboarding(
            self.store,
            self.blobs,
            self.runtimes,
            self.backend,
            self._check_bindings,
            self.reconcile,
            compiled_root=data / "compiled",
            limits=ArchiveLimits(max_package_bytes=config.max_package_bytes),
            allow_code_urls=config.allow_code_urls,
            allow_private_code_urls=config.allow_private_code_urls,
        )
        # EVE025 6.6.1: eBPF VNFs are attached to hooks, beside the event-driven functions
        self.ebpf = EbpfManager(
            default_ledger(data), version_finder(self.store, self.catalog), self.capacity
        )
        self.telemetry.registry.register(EbpfCollector(self.ebpf))
        self._wire_observability(config)

    def _wire_observability(self, config: Config) -> None:
        """Version-mapping policies and rollback (7.2.5), lifecycle events and subscriptions."""
        self.events = EventLog()
        self.versions = VersionMapping(self.store, self.events, self.reconcile)
        self.outcomes = OutcomeWindows(time.monotonic)
        self.telemetry.observe(self.outcomes.record)
        self.rollbacks = RollbackWatcher(
            self.versions, self.outcomes, self.store.serving_versions,
            interval_s=config.rollback_check_interval_s,
        )  # fmt: skip
        self.notifications = Notifications(
            self.store, self.events, self.telemetry.as_json,
            allow_private_callbacks=config.allow_private_callback_urls,
            metrics_interval_s=config.metrics_notification_interval_s,
        )  # fmt: skip
        self.manager.subscribe(instance_events(self.events))
        self.onboarding.observers.append(package_events(self.events))
        self.telemetry.registry.register(
            ResourceCollector(
                ResourceSources(
                    pools=lambda: [p.snapshot() for p in self.pools.values()],
                    node=self.capacity.snapshot,
                    weights=lambda: [
                        (app, fn, v, w)
                        for (app, fn), policy in self.distributor.policies().items()
                        for v, w in policy.weights
                    ],
                    rollbacks=lambda: dict(self.versions.rollback_counts),
                )
            )
        )

    def _capacity(self) -> NodeCapacity:
        """Configured capacity wins, then what the operator set through the API, then measured."""
        saved = self.store.get_setting("capacity") or {}
        memory, cpu = measured_capacity()
        return NodeCapacity(
            memory_mb=self.config.node_memory_mb or saved.get("memory_mb") or memory,
            cpu=self.config.node_cpu or saved.get("cpu") or cpu,
            cpu_overcommit=self.config.cpu_overcommit,
        )

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self.runtimes.register_builtins()
        recovery = self.onboarding.recover()
        if recovery.interrupted:
            log.warning(
                "packages interrupted by a restart, now ERROR: %s", ", ".join(recovery.interrupted)
            )
        self.operator_token = self.auth.ensure_operator(self.config.data_dir)
        if self.config.pools_enabled:
            for record in self.store.list_pools():
                await self._ensure_pool(record)
        # programs a crashed run left on their hooks are detached, not re-attached
        await self.ebpf.recover()
        self.manager.start()
        await self.reconcile()
        self.notifications.start()
        self.rollbacks.start()
        self.state = PlatformState.RUNNING

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Ordered, bounded and idempotent shutdown."""
        if self.state is PlatformState.CLOSED:
            return
        self.state = PlatformState.CLOSED
        # One deadline for both: triggers stop accepting at once and let their
        # in-flight events finish, then management deletes the instances.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.shutdown_grace_s
        await self.rollbacks.aclose()
        await self.triggers.aclose(grace_s=self.config.shutdown_grace_s)
        # chain hops started by the events just finished (they dispatch to the manager)
        await self.router.chains.aclose(grace_s=max(0.0, deadline - loop.time()))
        await self.ebpf.aclose()
        await self.manager.aclose(grace_s=max(0.0, deadline - loop.time()))
        for pool in self.pools.values():
            await pool.aclose()
        for name, backend in self._backends.items():
            if name not in self._given:
                await backend.aclose()
        # undelivered notifications stay in the outbox for the next start
        await self.notifications.aclose()
        self.store.close()

    # -- backends and pools --------------------------------------------------------------

    async def backend(self, name: str) -> SandboxBackend:
        """The started backend of that name, started on first use."""
        async with self._backend_lock:
            backend = self._backends.get(name)
            if backend is None:
                cls = backend_class(name)
                ok, why = cls.availability()
                if not ok:
                    raise BackendUnavailable(f"sandbox backend {name!r} cannot run here: {why}")
                backend = cls()
                await backend.start()
                self._backends[name] = backend
                log.info("sandbox backend %s started", name)
            return backend

    def _code_is_file(self, name: str) -> bool:
        given = self._given.get(name)
        return type(given).code_is_file if given is not None else backend_class(name).code_is_file

    def backend_now(self, name: str) -> SandboxBackend:
        backend = self._backends.get(name)
        if backend is None:
            raise BackendUnavailable(f"sandbox backend {name!r} is not started")
        return backend

    def _pool_for(self, version: FunctionVersion) -> RuntimePool | None:
        pool = self.pools.get(version.pool_id or "")
        runtime = version.descriptor.runtime
        # A pool only serves the runtime it was prepared for.
        if pool is None or pool.runtime != f"{runtime.name}:{runtime.version}":
            return None
        return pool

    async def _ensure_pool(self, record: PoolRecord) -> RuntimePool:
        pool = self.pools.get(record.id)
        if pool is None:
            runtime = self.runtimes.get(record.runtime_name, record.runtime_version)
            pool = RuntimePool(
                record.id,
                runtime.ref,
                await self.backend(runtime.backend),
                self.capacity,
                size=record.size,
                sandbox_memory_mb=runtime.sandbox_memory_mb,
            )
            self.pools[record.id] = pool
            pool.start()
        else:
            pool.resize(record.size)
        return pool

    async def set_pool(
        self, pool_id: str, size: int, runtime: tuple[str, str] | None = None
    ) -> RuntimePool:
        """Create a pool (with ``runtime``) or resize one; the size is kept across restarts."""
        existing = {p.id: p for p in self.store.list_pools()}.get(pool_id)
        if existing is None:
            if runtime is None:
                raise NotFound(f"no pool {pool_id}; give a runtime to create it")
            self.runtimes.get(*runtime)
            record = PoolRecord(pool_id, runtime[0], runtime[1], size)
        else:
            if runtime is not None and runtime != (existing.runtime_name, existing.runtime_version):
                raise InvalidRequest(
                    f"pool {pool_id} serves {existing.runtime_name}:{existing.runtime_version}"
                )
            record = PoolRecord(pool_id, existing.runtime_name, existing.runtime_version, size)
        if not 0 <= size <= 256:
            raise InvalidRequest(f"pool size must be between 0 and 256, not {size}")
        self.store.upsert_pool(record)
        return await self._ensure_pool(record)

    async def delete_pool(self, pool_id: str) -> None:
        if pool_id not in {p.id for p in self.store.list_pools()}:
            raise NotFound(f"no pool {pool_id}")
        self.store.delete_pool(pool_id)
        pool = self.pools.pop(pool_id, None)
        if pool is not None:
            await pool.aclose()

    # -- keeping triggers and management in step with the catalog -----------------------

    def current_versions(self) -> dict[tuple[str, str], FunctionVersion]:
        """The version each function serves: that of its newest enabled package."""
        return {
            (app, name): self.catalog.version(app, name, version)
            for (app, name), version in self.store.current_versions().items()
        }

    async def reconcile(self) -> None:
        """Make distributor, instances and trigger listeners match the stored catalog."""
        async with self._reconcile_lock:
            await self._reconcile()

    async def _reconcile(self) -> None:
        current = self.current_versions()
        # EVE025 7.2.5: every version a policy weights is live, not only the newest
        policies = self.versions.effective(self.store.serving_versions())
        weighted = [
            self.catalog.version(app, name, v)
            for (app, name), policy in policies.items()
            for v in policy.versions
        ]
        for fv in [*current.values(), *weighted]:
            await self.backend(fv.backend)
        self.distributor.set_policies(policies)
        self.rollbacks.refresh()
        live = {v.key for v in weighted}
        for deployment in self.manager.deployments():
            if deployment.version.key not in live:
                self.manager.retire(deployment.version.key)
        self.bindings = bindings_of_versions(current.values())
        await self.triggers.reconcile(self.bindings)

    def _check_bindings(self, app: str, descriptors: list[FunctionDescriptor]) -> None:
        self.triggers.check(app, descriptors, self.bindings)

    async def set_package_state(
        self, package_id: str, state: str, tenant: str | None
    ) -> PackageRecord:
        """ENABLE or DISABLE a package; enabling is refused (409) if its bindings are now taken."""
        async with self._reconcile_lock:
            before = self.onboarding.get(package_id, tenant)
            record = self.onboarding.set_operational_state(package_id, state, tenant)
            if state == "ENABLED" and before.operational_state != "ENABLED":
                # Another application may have taken a port or route while this one was off.
                wanted = bindings_of_versions(self.current_versions().values())
                clashes = [
                    c for c in self.triggers.conflicts(wanted) if c.binding.app == record.app
                ]
                if clashes:
                    self.onboarding.set_operational_state(
                        package_id, before.operational_state, tenant
                    )
                    raise BindingConflict(
                        f"cannot enable {record.app} {record.version}: "
                        + "; ".join(c.message for c in clashes)
                    )
            await self._reconcile()
            return self.onboarding.get(package_id, tenant)

    async def delete_runtime(self, name: str, version: str) -> None:
        """Delete a runtime no function uses, and close its pools."""
        for pool_id in self.runtimes.delete(name, version):
            pool = self.pools.pop(pool_id, None)
            if pool is not None:
                await pool.aclose()


def bindings_of_versions(versions: object) -> list[TriggerBinding]:
    out: list[TriggerBinding] = []
    for fv in versions:  # type: ignore[attr-defined]
        out.extend(bindings_of(fv.app, [fv.descriptor]))
    return out
