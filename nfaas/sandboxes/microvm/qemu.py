"""QEMU ``microvm`` guests: the command line, the acceleration, one running VM.

The machine has the fewest devices that work: no PCI, no option ROMs, one
16550 serial port (the guest's console, read for how its agent ended), a
virtio-serial port (``nfaas``, the worker protocol's channel, a unix socket
on the host), and the RTC (without it the kernel waits a second twice on it).
Guest memory is a file-backed memory backend: a snapshot's template VM maps
its file shared, so the file is the snapshot's RAM, and every restored VM maps
the same file private, so they share its pages until they write them (KVM's
and Kata's "VM templating", with QEMU's ``x-ignore-shared`` migration
capability: only device state goes through the migration stream).

Acceleration: KVM when the host offers a usable one, TCG (software
emulation) otherwise. ``/dev/kvm`` from PVM (a paravirtualised KVM for nested
guests, ``kvm_pvm``) boots only kernels built for it, so it counts as unusable.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from qemu.qmp import QMPClient

from nfaas.errors import BackendUnavailable, SandboxStartError

logger = logging.getLogger(__name__)

DEBIAN_PACKAGE = "qemu-system-x86"
QEMU = "qemu-system-x86_64"
#: the console line /init writes when the agent has ended
EXIT_LINE = re.compile(rb"^nfaas-agent-exit status=(\d+) oom_kill=(\d+)\r?$", re.MULTILINE)
_KVM_GET_API_VERSION = 0xAE00
CONSOLE_TAIL = 8192

Mode = Literal["boot", "template", "restore"]
#: a VM that runs a function: QEMU drops root for nobody once its files are open, and
#: seccomp refuses it new privileges, processes and obsolete or resource-control calls
#: (the template is trusted, and its migration spawns ``cat``)
CONFINED = (
    "-runas", "nobody",
    # (set*uid stays allowed: -runas needs it after seccomp is on; as nobody, QEMU
    # has no capability left to use it with)
    "-sandbox", "on,obsolete=deny,spawn=deny,resourcecontrol=deny",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Accelerator:
    name: str  # "kvm" or "tcg"
    why: str

    @property
    def cpu(self) -> str:
        return "host" if self.name == "kvm" else "max"


def choose_accelerator(prefer: str = "auto") -> Accelerator:
    """KVM if asked for or usable, TCG otherwise; ``why`` says what decided it."""
    if prefer == "tcg":
        return Accelerator("tcg", "TCG chosen by configuration")
    usable, why = _kvm_usable()
    if usable:
        return Accelerator("kvm", why)
    if prefer == "kvm":
        raise BackendUnavailable(f"KVM was asked for but cannot be used: {why}")
    return Accelerator("tcg", f"software emulation (TCG): {why}")


def _kvm_usable() -> tuple[bool, str]:
    if Path("/sys/module/kvm_pvm").exists():
        return False, "/dev/kvm is PVM, which boots only PVM-enabled guest kernels"
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return False, f"no usable /dev/kvm ({exc.strerror})"
    try:
        version = fcntl.ioctl(fd, _KVM_GET_API_VERSION)
    except OSError as exc:
        return False, f"/dev/kvm does not answer ({exc.strerror})"
    finally:
        os.close(fd)
    if version != 12:
        return False, f"/dev/kvm speaks KVM API {version}, not 12"
    return True, "/dev/kvm is usable"


def qemu_binary() -> str:
    path = shutil.which(QEMU)
    if path is None:
        raise BackendUnavailable(f"{QEMU} is not installed (install the {DEBIAN_PACKAGE} package)")
    return path


def qemu_version(binary: str) -> str:
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return done.stdout.splitlines()[0] if done.stdout else "unknown"


def host_tsc_khz() -> int:
    """The host's TSC rate, for ``tsc_early_khz``: under TCG the kernel would otherwise
    calibrate against the emulated PIT, slowly and, about one boot in ten, forever."""
    with contextlib.suppress(OSError, StopIteration, ValueError):
        with open("/proc/cpuinfo") as cpuinfo:
            line = next(line for line in cpuinfo if line.startswith("cpu MHz"))
        return int(float(line.split(":")[1]) * 1000)
    return 2_000_000


@dataclass(frozen=True, slots=True)
class MachineSpec:
    """Everything that must be the same for a snapshot's template and its restored VMs."""

    binary: str
    accelerator: Accelerator
    kernel: Path
    initrd: Path
    cmdline: str
    memory_mb: int
    vcpus: int = 1

    def argv(self, mode: Mode, *, channel: Path, qmp: Path, ram: Path | None = None) -> list[str]:
        """``boot``: a fresh guest in anonymous memory; ``template``: a guest whose RAM is
        the file ``ram`` mapped shared (it becomes a snapshot); ``restore``: that file
        mapped private, waiting for its device state (``-incoming defer``)."""
        if mode == "boot":
            memory = f"memory-backend-ram,id=ram,size={self.memory_mb}M"
        else:
            share = "on" if mode == "template" else "off"
            memory = (
                f"memory-backend-file,id=ram,size={self.memory_mb}M,mem-path={ram},share={share}"
            )
        incoming = ["-incoming", "defer"] if mode == "restore" else []
        return [
            self.binary,
            "-machine",
            "microvm,x-option-roms=off,rtc=on,isa-serial=on,pit=on,pic=on,memory-backend=ram",
            "-accel", self.accelerator.name,
            "-cpu", self.accelerator.cpu,
            "-m", f"{self.memory_mb}M",
            "-smp", str(self.vcpus),
            "-object", memory,
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-serial", "stdio",
            "-kernel", str(self.kernel),
            "-initrd", str(self.initrd),
            "-append", self.cmdline,
            "-device", "virtio-serial-device",
            "-chardev", f"socket,id=channel,path={channel},server=on,wait=off",
            "-device", "virtserialport,chardev=channel,name=nfaas",
            "-qmp", f"unix:{qmp},server=on,wait=off",
            *incoming,
            *(CONFINED if mode != "template" else ()),
        ]  # fmt: skip


@dataclass(slots=True)
class GuestEnd:
    """How a VM ended: QEMU's exit status, and the agent's, when the guest said it."""

    qemu_status: int
    agent_status: int | None = None
    oom_kills: int = 0


@dataclass(slots=True, eq=False)
class Vm:
    """One running QEMU process and the files it uses."""

    process: asyncio.subprocess.Process
    folder: Path
    pidfd: int
    console: bytearray = field(default_factory=bytearray)
    errors: bytearray = field(default_factory=bytearray)
    ended: asyncio.Future[GuestEnd] | None = None
    _readers: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def channel(self) -> Path:
        return self.folder / "channel.sock"

    @property
    def qmp(self) -> Path:
        return self.folder / "qmp.sock"

    def kill(self) -> None:
        if self.pidfd >= 0:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)

    def close_pidfd(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1

    def describe_failure(self) -> str:
        text = (self.errors or self.console)[-600:].decode(errors="replace").strip()
        return text or "no output"


async def launch(
    spec: MachineSpec,
    folder: Path,
    mode: Mode,
    *,
    ram: Path | None = None,
    pass_fds: tuple[int, ...] = (),
) -> Vm:
    """Start QEMU for a VM whose sockets live in ``folder``; it watches its own end."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    argv = spec.argv(mode, channel=folder / "channel.sock", qmp=folder / "qmp.sock", ram=ram)
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        pass_fds=pass_fds,
    )
    vm = Vm(process, folder, os.pidfd_open(process.pid))
    loop = asyncio.get_running_loop()
    vm.ended = loop.create_future()
    assert process.stdout is not None and process.stderr is not None
    vm._readers = [
        asyncio.create_task(_keep_tail(process.stdout, vm.console)),
        asyncio.create_task(_keep_tail(process.stderr, vm.errors)),
    ]
    asyncio.create_task(_watch(vm))  # noqa: RUF006 (ends with the process; settles vm.ended)
    return vm


async def _keep_tail(stream: asyncio.StreamReader, tail: bytearray) -> None:
    while chunk := await stream.read(4096):
        tail.extend(chunk)
        del tail[:-CONSOLE_TAIL]


async def _watch(vm: Vm) -> None:
    status = await vm.process.wait()
    await asyncio.gather(*vm._readers, return_exceptions=True)
    end = GuestEnd(status)
    # The function writes on the console too: only a guest that powered off by itself
    # (QEMU's status 0) has /init's line, and it is the last one.
    matches = EXIT_LINE.findall(bytes(vm.console)) if status == 0 else []
    if matches:
        end.agent_status, end.oom_kills = int(matches[-1][0]), int(matches[-1][1])
    assert vm.ended is not None
    if not vm.ended.done():
        vm.ended.set_result(end)


async def connect_unix(
    path: Path, vm: Vm, timeout_s: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to one of the VM's sockets as soon as QEMU has made it."""
    async with asyncio.timeout(timeout_s):
        while True:
            if vm.ended is not None and vm.ended.done():
                raise SandboxStartError(f"QEMU ended before it listened: {vm.describe_failure()}")
            try:
                return await asyncio.open_unix_connection(str(path))
            except (FileNotFoundError, ConnectionRefusedError):
                await asyncio.sleep(0.002)


async def qmp_session(vm: Vm, timeout_s: float) -> QMPClient:
    """A QMP session with the VM's QEMU, retried until its socket exists."""
    client = QMPClient(f"nfaas-vm-{vm.pid}")
    async with asyncio.timeout(timeout_s):
        while True:
            if vm.ended is not None and vm.ended.done():
                raise SandboxStartError(f"QEMU ended before it listened: {vm.describe_failure()}")
            if vm.qmp.exists():
                try:
                    await client.connect(str(vm.qmp))
                    return client
                except Exception:  # qemu.qmp's ConnectError: not listening yet
                    pass
            await asyncio.sleep(0.002)
