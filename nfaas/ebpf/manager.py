"""eBPF VNF instances on this node: instantiate, find, terminate (EVE025 6.6.1, use case #6).

``instantiate`` carries out use case #6 steps 4-6 for a function version whose
descriptor has an ``ebpf`` section: reserve its estimated memory on the node,
load the object onboarding built, let the kernel verifier run, attach the
program to its hook and write the attachment to the ledger. Any failure
releases everything it took -- the program, its maps, the attachment, the
reservation, the hook -- before the error is raised, so a refused instance
leaves nothing behind. One program per hook: the second instance on an
occupied hook is refused before anything is loaded.

``aclose`` (platform shutdown) terminates every instance; ``recover`` (start)
detaches whatever a crashed run left attached (``nfaas.ebpf.ledger``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from nfaas.catalog.functions import FunctionCatalog
from nfaas.catalog.store import StateStore
from nfaas.ebpf.instances import EbpfInstance, InstanceState
from nfaas.ebpf.ledger import Ledger
from nfaas.ebpf.loader import BpfProgram, Hook, TcHook, XdpHook
from nfaas.ebpf.netns import netns_path
from nfaas.ebpf.onboarding import read_report
from nfaas.errors import BindingConflict, InvalidRequest, NotFound, SandboxStartError
from nfaas.lifecycle.infra import NodeCapacity
from nfaas.lifecycle.instances import FunctionVersion

log = logging.getLogger(__name__)

#: (app, function, version or None for the current one) -> the version to instantiate
VersionFinder = Callable[[str, str, str | None], FunctionVersion]


def version_finder(store: StateStore, catalog: FunctionCatalog) -> VersionFinder:
    """Versions by name; with no version, the one the function serves now (7.2.5)."""

    def find(app: str, name: str, version: str | None) -> FunctionVersion:
        if version is None:
            version = store.current_versions().get((app, name))
            if version is None:
                raise NotFound(f"no enabled function {app}/{name}")
        return catalog.version(app, name, version)

    return find


class EbpfManager:
    def __init__(
        self, ledger: Ledger, find: VersionFinder, capacity: NodeCapacity | None = None
    ) -> None:
        self._ledger = ledger
        self._find = find
        self._capacity = capacity
        self._instances: dict[str, EbpfInstance] = {}
        #: hook slot -> instance id, for instances attached or being attached
        self._slots: dict[tuple[str | None, str, str], str] = {}
        self._closed = False

    # -- queries ------------------------------------------------------------

    def instances(self) -> list[EbpfInstance]:
        return sorted(self._instances.values(), key=lambda i: i.created_at)

    def version(self, app: str, name: str, version: str | None = None) -> FunctionVersion:
        """A function version by name (the current one without ``version``)."""
        return self._find(app, name, version)

    def get(self, instance_id: str) -> EbpfInstance:
        instance = self._instances.get(instance_id)
        if instance is None:
            raise NotFound(f"no eBPF instance {instance_id}")
        return instance

    # -- instantiate --------------------------------------------------------

    def _hook(
        self,
        fv: FunctionVersion,
        interface: str | None,
        netns: str | None,
        direction: Literal["ingress", "egress"] | None,
        mode: Literal["generic", "native"] | None,
    ) -> Hook:
        settings = fv.descriptor.ebpf
        assert settings is not None
        where = interface or settings.hook.interface
        if not where:
            raise InvalidRequest(
                f"{fv.app}/{fv.name}: give an interface (the descriptor names none)"
            )
        if netns is not None:
            try:
                netns_path(netns)
            except FileNotFoundError as exc:
                raise NotFound(str(exc), netns=netns) from None
        if settings.program.type == "xdp":
            if direction == "egress":
                raise InvalidRequest(f"{fv.app}/{fv.name} is an XDP program: ingress only")
            return XdpHook(where, mode or settings.hook.attach_mode, netns)
        if mode == "native":
            raise InvalidRequest(f"{fv.app}/{fv.name} is a tc program: no native mode")
        return TcHook(where, direction or settings.hook.direction, netns)

    async def instantiate(
        self,
        app: str,
        name: str,
        *,
        version: str | None = None,
        interface: str | None = None,
        netns: str | None = None,
        direction: Literal["ingress", "egress"] | None = None,
        mode: Literal["generic", "native"] | None = None,
    ) -> EbpfInstance:
        """Load, verify and attach; the instance is ATTACHED, or nothing is left."""
        if self._closed:
            raise SandboxStartError("the platform is shutting down")
        fv = self._find(app, name, version)
        settings = fv.descriptor.ebpf
        if settings is None or fv.code.compiled_path is None:
            raise InvalidRequest(f"{app}/{name}@{fv.version} is not an eBPF function")
        hook = self._hook(fv, interface, netns, direction, mode)
        holder = self._slots.get(hook.slot)
        if holder is not None:
            raise BindingConflict(f"{hook} is held by eBPF instance {holder}", instance=holder)
        instance_id = "ebpf-" + secrets.token_hex(4)
        self._slots[hook.slot] = instance_id
        report = read_report(fv.code.compiled_path)
        footprint: dict[str, int] = dict(report.get("footprint_bytes") or {})
        reservation = None
        program = BpfProgram(fv.code.compiled_path, fv.code.handler, name=f"{app}/{name}")
        try:
            if self._capacity is not None:
                mb = math.ceil(footprint.get("total", 0) / (1 << 20))
                reservation = self._capacity.reserve(mb, 0.0, f"eBPF {app}/{name}")
            started = time.perf_counter()
            await program.load()
            await program.attach(hook)
            elapsed = time.perf_counter() - started
            record: dict[str, object] = {"app": app, "function": name, "netns": hook.netns,
                      "interface": hook.interface, "prog_id": program.prog_id}  # fmt: skip
            assert program.attachment is not None
            record.update(program.attachment.record())
            await asyncio.to_thread(self._ledger.add, instance_id, record)
        except BaseException:
            self._slots.pop(hook.slot, None)
            if self._capacity is not None:
                self._capacity.release(reservation)
            await program.aclose()
            raise
        instance = EbpfInstance(
            instance_id, app, name, fv.version, fv.tenant, settings, hook, program,
            elapsed, footprint, reservation,
        )  # fmt: skip
        self._instances[instance_id] = instance
        log.info("eBPF %s/%s@%s attached: %s (%s, %.1f ms)", app, name, fv.version, hook,
                 instance_id, elapsed * 1000)  # fmt: skip
        return instance

    # -- terminate ----------------------------------------------------------

    async def terminate(self, instance_id: str) -> None:
        """Detach and unload; the hook is free and nothing of the instance is left."""
        instance = self.get(instance_id)
        if instance.state is not InstanceState.ATTACHED:
            return
        instance.state = InstanceState.TERMINATING
        try:
            await instance.program.aclose()
        except BaseException:
            # still attached (detach failed): keep it listed so that it can be retried
            instance.state = InstanceState.ATTACHED
            raise
        instance.state = InstanceState.TERMINATED
        self._instances.pop(instance_id, None)
        self._slots.pop(instance.hook.slot, None)
        if self._capacity is not None:
            self._capacity.release(instance.reservation)
        await asyncio.to_thread(self._ledger.remove, instance_id)
        log.info("eBPF instance %s terminated (%s)", instance_id, instance.hook)

    # -- start and shutdown -------------------------------------------------

    async def recover(self) -> list[str]:
        """Detach what a previous run left attached; the ledger ids it cleaned."""
        return await asyncio.to_thread(self._ledger.clean)

    async def aclose(self) -> None:
        """Terminate every instance; idempotent. An instance that fails to detach is logged."""
        self._closed = True
        for instance in list(self._instances.values()):
            try:
                await self.terminate(instance.id)
            except Exception:
                log.exception("eBPF instance %s did not detach at shutdown", instance.id)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def default_ledger(data_dir: Path) -> Ledger:
    return Ledger(data_dir / "ebpf" / "attachments.json")
