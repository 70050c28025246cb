"""The microVM backend: Python functions in QEMU ``microvm`` guests restored from a snapshot.

EVE025 clause 4.3 (key issue #7.2): a microVM has a kernel of its own, so it
isolates by hardware virtualisation (or, without a usable KVM, by QEMU's
software emulation). At ``start`` the backend loads the guest image
(``image``), appends the agent's layer to its initramfs and makes sure a
snapshot of a booted, runtime-loaded guest exists for that pair
(``snapshot``): booting takes seconds under TCG, and it is done once.

A sandbox is one VM. ``prepare`` (EVE025 7.2.3 steps 1-3, what a pool holds
ready) restores the snapshot: QEMU starts with the snapshot's RAM file mapped
private and waits for its device state, the host connects to the VM's port,
sets ``x-ignore-shared`` over QMP and feeds it ``state`` (``handshake``); the
guest resumes in the agent's read, answers ``hello`` with its clock and becomes the
process backend's worker, whose ``ready`` ends ``prepare``. From there the
sandbox is the process backend's ``ProcessSandbox``, with a VM in place of a
forked child: ``load`` (steps 4-5) sends the code's files in the load frame
(the guest sees nothing of the host's disk), ``invoke`` sends events, a
timeout kills QEMU, and the guest's ``/init`` reports on the console how the
agent ended (its exit status, and whether the guest's OOM killer ran).

Memory: a VM has ``vm_memory_mb`` of RAM (the snapshot's); the function's
``memory_mb`` is its worker's RLIMIT_DATA inside the guest, as in the process
backend, and may not exceed what the guest has free. Its resident memory on
the host is QEMU's, mostly pages of the snapshot's RAM file shared by every
VM restored from it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib._bootstrap_external
import importlib.util
import logging
import os
import secrets
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from nfaas.errors import BackendUnavailable, EventTooLarge, SandboxError, SandboxStartError
from nfaas.sandboxes.base import FunctionCode, Sandbox, SandboxBackend
from nfaas.sandboxes.container_bundle import ContainerCgroup, remove_parent_cgroups
from nfaas.sandboxes.microvm.handshake import connect_port, expect_booted, hello, migrate_in
from nfaas.sandboxes.microvm.image import (
    GuestImage,
    agent_layer,
    default_image_dir,
    load_image,
)
from nfaas.sandboxes.microvm.qemu import (
    Accelerator,
    GuestEnd,
    MachineSpec,
    Vm,
    choose_accelerator,
    host_tsc_khz,
    launch,
    qemu_binary,
    qemu_version,
)
from nfaas.sandboxes.microvm.snapshot import Snapshot, ensure_snapshot, snapshot_key
from nfaas.sandboxes.process import DEFAULT_ENV
from nfaas.sandboxes.process_sandbox import ProcessSandbox
from nfaas.sandboxes.protocol import DEFAULT_MAX_FRAME, Message
from nfaas.sandboxes.protocol import pack as pack_frame
from nfaas.sandboxes.worker import EXIT_OUT_OF_MEMORY
from nfaas.sandboxes.zygote_client import WorkerHandle

logger = logging.getLogger(__name__)

WORK_PREFIX = "nfaas-microvm-"
#: where the agent writes the function's code, and works (``agent.CODE``, ``agent.SCRATCH``)
GUEST_CODE = "/tmp/code"
GUEST_SCRATCH = "/tmp/scratch"
#: the bytecode tag of the guest's interpreter (the image's python3.11)
GUEST_CACHE_TAG = "cpython-311"
#: what the guest's kernel, root filesystem (Python, numpy, the agent) and the warm
#: runtime take of its RAM before a function runs
GUEST_OVERHEAD_MB = 192
#: QEMU's own memory beside the guest's RAM, in its host cgroup's limit
QEMU_OVERHEAD_MB = 160
#: nfaas's own libraries imported before the snapshot, beside ``guest_packages``
PRELOADED = ("nfaas.nf",)
#: QEMU's threads (vCPU, I/O, RCU, ...): its cgroup's pids limit
VM_TASKS = 64


@dataclass(frozen=True, slots=True)
class MicrovmConfig:
    """How the microVM backend builds, snapshots and runs its VMs."""

    #: the guest image (``nfaas microvm build``)
    image_dir: Path = field(default_factory=default_image_dir)
    #: machine-wide: snapshots are shared by every platform of this host
    snapshot_dir: Path = Path("/var/cache/nfaas/microvm/snapshots")
    #: "auto" (KVM if usable, else TCG), "kvm" or "tcg"
    accelerator: str = "auto"
    #: the guest's RAM: the initramfs (about 100 MB with numpy) is unpacked in it
    vm_memory_mb: int = 512
    vcpus: int = 1
    #: host CPU share of a VM waiting in a pool, before a function's own ``cpu`` is set
    pool_cpu: float = 1.0
    max_frame: int = DEFAULT_MAX_FRAME
    env: dict[str, str] = field(
        default_factory=lambda: {**DEFAULT_ENV, "HOME": GUEST_SCRATCH, "TMPDIR": GUEST_SCRATCH}
    )
    #: a restore is ~0.2 s under TCG on an idle host; a busy one may take seconds
    prepare_timeout_s: float = 15.0
    load_timeout_s: float = 15.0
    #: booting the template for a snapshot (~8 s under TCG)
    boot_timeout_s: float = 90.0
    #: False: every VM boots from nothing (no snapshot is made or used)
    snapshots: bool = True
    #: where the backend's folder (the VMs' sockets) is made (None: temp)
    work_dir: Path | None = None
    #: extra files for the agent's layer (guest path -> content): tests use it
    agent_overrides: dict[str, bytes] = field(default_factory=dict)
    #: packages of the platform's environment copied into the guest and imported
    #: before the snapshot (numpy: the NF framework, ``nfaas.nf``, needs it)
    guest_packages: tuple[str, ...] = ("numpy",)


@dataclass(slots=True)
class VmHandle(WorkerHandle):
    """A restored VM as its sandbox holds it."""

    vm: Vm | None = None
    #: the QEMU process's cgroup on the host: the vCPU share and memory of the VM
    cgroup: ContainerCgroup | None = None


class MicrovmBackend(SandboxBackend):
    """Python functions in QEMU microVMs restored from a per-runtime snapshot."""

    name: ClassVar[str] = "microvm"

    def __init__(self, config: MicrovmConfig | None = None) -> None:
        config = config or MicrovmConfig()
        if not config.snapshots:  # preparing a sandbox is then booting a guest
            timeout = max(config.prepare_timeout_s, config.boot_timeout_s)
            config = dataclasses.replace(config, prepare_timeout_s=timeout)
        self.config = config
        self.image: GuestImage | None = None
        self.snapshot: Snapshot | None = None
        self._spec: MachineSpec | None = None
        self._work: Path | None = None
        self._sandboxes: set[MicrovmSandbox] = set()
        self._vms: set[Vm] = set()
        self._cgroup_parent = f"/{WORK_PREFIX}{secrets.token_hex(4)}"

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            qemu_binary()
            load_image(MicrovmConfig().image_dir)
        except BackendUnavailable as exc:
            return False, exc.detail
        return True, "available"

    async def start(self) -> None:
        if self._work is not None:
            return
        config = self.config
        binary = qemu_binary()
        self.image = image = load_image(config.image_dir)
        accelerator = choose_accelerator(config.accelerator)
        logger.info("microVMs run on %s: %s", accelerator.name, accelerator.why)
        remove_parent_cgroups(f"/{WORK_PREFIX}*")  # empty ones, of backends that are gone
        work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=config.work_dir))
        try:
            self._spec, agent_digest = await self._machine(binary, accelerator, work)
            if config.snapshots:
                key = snapshot_key(self._spec, image.digest, agent_digest, qemu_version(binary))
                self.snapshot = await ensure_snapshot(
                    config.snapshot_dir, key, self._spec, work / "initrd", config.boot_timeout_s
                )
                (work / "initrd").unlink()  # the snapshot keeps its own copy
        except BaseException as exc:
            shutil.rmtree(work, ignore_errors=True)
            if isinstance(exc, ImportError):
                raise BackendUnavailable(
                    f"a package for the microVM guest is not installed here: {exc}"
                ) from exc
            raise
        self._work = work

    async def _machine(
        self, binary: str, accelerator: Accelerator, work: Path
    ) -> tuple[MachineSpec, str]:
        """The guest's machine, its initramfs in ``work``; and the agent layer's digest."""
        config, image = self.config, self.image
        assert image is not None
        layer = work / "agent.cpio"
        agent_digest = await asyncio.to_thread(
            agent_layer, layer, config.agent_overrides, config.guest_packages
        )
        initrd = work / "initrd"
        await asyncio.to_thread(_concatenate, initrd, image.rootfs, layer)
        layer.unlink()
        # The guest keeps time by the TSC, at the host's rate: under a busy TCG host its
        # watchdog would otherwise fall back to jiffies, which drift with late ticks.
        cmdline = (
            f"{image.cmdline} tsc_early_khz={host_tsc_khz()} tsc=reliable clocksource=tsc "
            f"nfaas.max_frame={config.max_frame} "
            f"nfaas.preload={','.join((*config.guest_packages, *PRELOADED))}"
        )
        spec = MachineSpec(
            binary, accelerator, image.kernel, initrd, cmdline, config.vm_memory_mb, config.vcpus
        )
        return spec, agent_digest

    def create(self) -> Sandbox:
        if self._work is None:
            raise BackendUnavailable("the microVM backend is not started")
        sandbox = MicrovmSandbox(self)
        self._sandboxes.add(sandbox)
        return sandbox

    def scratch_named(self, name: object) -> None:
        """A VM's scratch is its own /tmp, gone with it: nothing for the host to remove."""
        return None

    def forget(self, sandbox: ProcessSandbox) -> None:
        if isinstance(sandbox, MicrovmSandbox):
            self._sandboxes.discard(sandbox)

    async def fork(self) -> VmHandle:
        """A VM taken to the agent's ``hello``: restored from the snapshot, or booted."""
        if self._work is None or self._spec is None:
            raise BackendUnavailable("the microVM backend is not started")
        folder = self._work / f"vm-{secrets.token_hex(6)}"
        snapshot = self.snapshot
        state = -1
        if snapshot is not None:
            state = os.open(snapshot.state, os.O_RDONLY | os.O_CLOEXEC)
            try:
                vm = await launch(
                    snapshot.spec, folder, "restore", ram=snapshot.ram, pass_fds=(state,)
                )
            finally:
                os.close(state)  # QEMU has its own copy, under the same number
        else:
            vm = await launch(self._spec, folder, "boot")
        self._vms.add(vm)
        exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        cgroup = ContainerCgroup(f"{self._cgroup_parent}/{folder.name}")
        assert vm.ended is not None
        vm.ended.add_done_callback(lambda _: self._vm_ended(vm, cgroup, exited))
        sock: socket.socket | None = None
        try:
            # Before the guest runs: QEMU waits for its state, or is still starting.
            cgroup.create()
            cgroup.set_limits(self._host_memory_mb, self.config.pool_cpu, VM_TASKS)
            cgroup.add(vm.pid)
            sock = await connect_port(vm)
            if snapshot is not None:
                await migrate_in(vm, state, self.config.prepare_timeout_s)
            else:
                await expect_booted(sock, self.config.boot_timeout_s)
            offset = await hello(sock, self.config.max_frame)
        except BaseException as exc:
            vm.kill()
            if sock is not None:
                sock.close()
            if isinstance(exc, SandboxError | OSError | EOFError) and not isinstance(
                exc, SandboxStartError
            ):
                raise SandboxStartError(f"cannot start a microVM: {exc}") from exc
            raise
        # the sandbox releases its own pidfd; the VM keeps its own until it has ended
        handle_pidfd = os.dup(vm.pidfd)
        return VmHandle(
            vm.pid, sock, handle_pidfd, exited, clock_offset=offset, vm=vm, cgroup=cgroup
        )

    @property
    def _host_memory_mb(self) -> int:
        """A VM's cgroup memory limit on the host: its RAM and QEMU's own."""
        return self.config.vm_memory_mb + QEMU_OVERHEAD_MB

    def _vm_ended(self, vm: Vm, cgroup: ContainerCgroup, exited: asyncio.Future[int]) -> None:
        assert vm.ended is not None
        end = vm.ended.result()
        if not exited.done():
            host_oom = end.agent_status is None and cgroup.oom_kills() > 0
            exited.set_result(EXIT_OUT_OF_MEMORY if host_oom else _exit_status(end))
        self._vms.discard(vm)
        vm.close_pidfd()
        cgroup.remove()
        shutil.rmtree(vm.folder, ignore_errors=True)

    async def aclose(self) -> None:
        for sandbox in list(self._sandboxes):
            await sandbox.aclose()
        vms = list(self._vms)
        for vm in vms:
            vm.kill()
        ended = [vm.ended for vm in vms if vm.ended is not None]
        if ended:
            await asyncio.wait(ended, timeout=5)
        work, self._work = self._work, None
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        remove_parent_cgroups(self._cgroup_parent)


class MicrovmSandbox(ProcessSandbox):
    """One function instance in one microVM; the worker protocol over its virtio port."""

    backend: ClassVar[str] = "microvm"

    def __init__(self, owner: MicrovmBackend) -> None:
        super().__init__(owner)  # type: ignore[arg-type]  # same duck type as the zygote's owner
        self._vm_owner = owner

    async def load(self, code: FunctionCode) -> None:
        room = self._vm_owner.config.vm_memory_mb - GUEST_OVERHEAD_MB
        if code.limits.memory_mb > room:
            self._break(f"load refused: {code.limits.memory_mb} MB asked")
            raise SandboxStartError(
                f"{code.ref}: asks for {code.limits.memory_mb} MB but a microVM of this runtime "
                f"has {self._vm_owner.config.vm_memory_mb} MB of RAM, {room} MB of it for the "
                "function (raise MicrovmConfig.vm_memory_mb)"
            )
        handle = self.worker
        if isinstance(handle, VmHandle) and handle.cgroup is not None:
            try:  # the function's vCPU share, on the host (its memory is kept in the guest)
                handle.cgroup.set_limits(self._vm_owner._host_memory_mb, code.limits.cpu, VM_TASKS)
            except OSError as exc:
                self._break(f"load refused: {exc}")
                raise SandboxStartError(
                    f"{code.ref}: cannot set the VM's CPU share: {exc}"
                ) from exc
        await super().load(code)
        # No per-invocation CPU budget: QEMU's CPU time counts emulation and an idle
        # guest's timer ticks, and would end an idle VM. The wall-clock timeout and the
        # host cgroup's CPU quota (the function's ``cpu``) bound it instead.
        if self._cpu is not None:
            self._cpu.stop()
            self._cpu = None

    def _send_load(self, message: Message, code: FunctionCode) -> None:
        """The load frame with the code's files in it: the guest has no view of the host."""
        assert self._writer is not None
        message["path"] = GUEST_CODE
        message["scratch"] = GUEST_SCRATCH
        message["files"] = files = _read_code(code.path)
        try:
            frame = pack_frame(message, self._max_frame)
        except EventTooLarge as exc:
            size = sum(len(data) for data in files.values())
            raise SandboxStartError(
                f"{code.ref}: its code ({size} bytes with its bytecode) does not fit the "
                f"{self._max_frame}-byte frame a microVM's load travels in"
            ) from exc
        self._writer.write(frame)


def _read_code(folder: Path) -> dict[str, bytes]:
    """The code folder's files, each module with its bytecode when the host's Python
    makes the guest's: the guest then imports without compiling (its compiler is
    slow to run the first time after a restore, under TCG)."""
    files: dict[str, bytes] = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.is_symlink() or "__pycache__" in path.parts:
            continue
        relative = path.relative_to(folder)
        data = path.read_bytes()
        files[relative.as_posix()] = data
        if path.suffix == ".py" and sys.implementation.cache_tag == GUEST_CACHE_TAG:
            pyc = _bytecode(data, f"{GUEST_CODE}/{relative.as_posix()}")
            if pyc is not None:
                cached = relative.parent / "__pycache__" / f"{relative.stem}.{GUEST_CACHE_TAG}.pyc"
                files[cached.as_posix()] = pyc
    return files


@functools.lru_cache(maxsize=256)
def _bytecode(source: bytes, guest_path: str) -> bytes | None:
    """An unchecked hash-based .pyc of ``source``; None if it does not compile (the
    guest's import then reports the error as it would anyway)."""
    try:
        code = compile(source, guest_path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return None
    to_pyc = importlib._bootstrap_external._code_to_hash_pyc  # type: ignore[attr-defined]
    return bytes(to_pyc(code, importlib.util.source_hash(source), False))


def _exit_status(end: GuestEnd) -> int:
    """The worker's exit status as a forked child's would read (negative: a signal)."""
    if end.agent_status is None:
        return end.qemu_status  # QEMU itself ended (killed: negative)
    if end.agent_status > 128:
        if end.oom_kills and end.agent_status == 128 + 9:
            return EXIT_OUT_OF_MEMORY  # the guest's OOM killer ended the worker
        return -(end.agent_status - 128)
    return end.agent_status


def _concatenate(dest: Path, *parts: Path) -> None:
    with open(dest, "wb") as out:
        for part in parts:
            with open(part, "rb") as data:
                shutil.copyfileobj(data, out, 1 << 20)
