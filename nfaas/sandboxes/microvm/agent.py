"""The guest agent: runs inside a microVM and serves one function over a virtio port.

``/init`` starts it as ``python3.11 -m nfaas.sandboxes.microvm.agent /dev/vport0p1``.
It is the process backend's worker (``nfaas.sandboxes.worker``) on the
virtio-serial port, as an unprivileged user:

1. boot: as root, the worker says ``ready`` and, while idle, rehearses a throwaway load
   and invocation (imports, files, bytecode), then the agent says ``booted``.
   The platform snapshots the VM here, blocked in the worker's read, once per
   runtime image (EVE025 7.2.3 steps 1-3 done once for all).
2. every VM restored from that snapshot resumes in that read. The platform
   sends ``hello`` frames; the worker answers each with its ``time.monotonic()``
   (the guest's clock is not the host's: the platform converts deadlines and
   first-line times with the difference). The last one carries fresh entropy:
   the agent reseeds the kernel's and the runtime's random generators with it
   (every VM of a snapshot resumes with the template's), drops root for an
   unprivileged user, and the worker says ``ready`` again,
   and rehearses again while idle (under TCG a restored guest runs each path
   slowly the first time: QEMU's translations are not in the snapshot),
   stepping aside as soon as a frame arrives. Then ``load`` (the code travels in
   the load frame, as ``files``), ``invoke``...

The port is a character device, not a socket: ``PortChannel`` gives the
worker the few socket methods it uses. A read of 0 bytes means the host side
is not connected: until the first frame (a VM restored before its host
reached the port) the channel waits and reads again; after, it is the end.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import importlib
import importlib._bootstrap_external
import importlib.util
import os
import random
import select
import shutil
import struct
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from nfaas.sandboxes import worker
from nfaas.sandboxes.protocol import DEFAULT_MAX_FRAME, send_message

if TYPE_CHECKING:
    import socket

#: the unprivileged user the function runs as inside the guest
NOBODY = 65534
#: ioctls of random(4): add entropy (credited), reseed the CRNG now
RNDADDENTROPY = 0x40085203
RNDRESEEDCRNG = 0x5207
SCRATCH = "/tmp/scratch"
CODE = "/tmp/code"
#: how long to wait before reading again while the host is not connected
RECONNECT_POLL_S = 0.002
REHEARSAL = "/tmp/rehearsal"
REHEARSAL_MODULE = "_nfaas_rehearsal"
REHEARSAL_SOURCE = b"def handle(event, context):\n    return {'body': event.text()}\n"
REHEARSAL_IDENTITY = {"app": "", "name": "", "version": "", "instance_id": ""}


class PortChannel:
    """A virtio-serial port with the socket methods the worker protocol calls."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._heard = False

    def fileno(self) -> int:
        return self._fd

    def recv_into(self, buffer: memoryview) -> int:
        while (n := os.readv(self._fd, [buffer])) == 0 and not self._heard:
            time.sleep(RECONNECT_POLL_S)  # no host yet
        self._heard = True
        return n

    def recvmsg_into(
        self, buffers: list[memoryview], ancbufsize: int = 0, flags: int = 0
    ) -> tuple[int, list[Any], int, None]:
        return self.recv_into(buffers[0]), [], 0, None

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]


def main(argv: list[str]) -> int:
    port = argv[1] if len(argv) > 1 else "/dev/vport0p1"
    fd = os.open(port, os.O_RDWR)
    sock = cast("socket.socket", PortChannel(fd))
    max_frame = int(_boot_parameter("nfaas.max_frame") or DEFAULT_MAX_FRAME)
    for package in filter(None, (_boot_parameter("nfaas.preload") or "").split(",")):
        importlib.import_module(package)  # in the snapshot: imported once for every VM
    _make_folders()
    booted = False

    def idle() -> None:
        nonlocal booted
        _rehearse(fd if booted else None)
        if not booted:  # the template: the platform snapshots the VM after this
            booted = True
            send_message(sock, {"op": "booted", "pid": os.getpid()}, max_frame)

    worker.serve(
        sock, max_frame, ["vm"], scratch=SCRATCH, warm_up=False, idle=idle, on_hello=_restored
    )


def _restored(hello: dict[str, Any]) -> None:
    """After the last ``hello``: make this VM's randomness its own, then drop root.

    Every VM restored from one snapshot resumes with the template's random state:
    the kernel's CRNG and Python's and numpy's generators would give every instance
    the same keys and tokens. The host sends fresh bytes; as root the agent adds
    them to the kernel's pool and forces a reseed (RNDADDENTROPY, RNDRESEEDCRNG),
    then reseeds the generators of the runtime from it. (Python's hash seed cannot
    change in a running interpreter: every VM of a snapshot shares it.)
    """
    entropy = hello.get("entropy")
    if isinstance(entropy, bytes) and entropy:
        with open("/dev/urandom", "wb") as pool:
            info = struct.pack("ii", len(entropy) * 8, len(entropy)) + entropy
            fcntl.ioctl(pool, RNDADDENTROPY, info)
            fcntl.ioctl(pool, RNDRESEEDCRNG)
    random.seed()
    # numpy's generator only if the template imported it (numpy loads numpy.random
    # lazily: importing it here would cost a restore a second under TCG); one imported
    # later seeds itself from the reseeded kernel.
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()
    if os.getuid() == 0:
        _drop_privileges()


def _boot_parameter(name: str) -> str | None:
    """``name=value`` from the kernel's command line: the backend's settings."""
    with open("/proc/cmdline") as cmdline:
        for word in cmdline.read().split():
            key, _, value = word.partition("=")
            if key == name:
                return value
    return None


def _rehearse(port: int | None = None) -> None:
    """Go through a load and an invocation of a throwaway function, files and all.

    In the template, so the snapshot has everything they touch in memory; and in
    each restored VM after ``ready``, while it waits in a pool, since under TCG code
    runs slowly the first time after a restore (QEMU translates it again: its
    translations are not in the snapshot). With ``port``, each step first looks
    whether the platform has sent something (a ``load`` that arrived at once, on
    the cold path): then the rehearsal stops and the function goes first.
    """
    module, folder = REHEARSAL_MODULE, REHEARSAL
    files = _rehearsal_files(module)
    steps: tuple[Callable[[], object], ...] = (
        lambda: worker._write_code(files, folder),
        lambda: open("/proc/self/status", "rb").close(),  # what _limit_resources reads
        lambda: worker._import_handler(folder, f"{module}:handle")(
            worker.FunctionEvent("invoke", b"{}", {}),
            worker.FunctionContext(REHEARSAL_IDENTITY, time.monotonic() + 1),
        ),
        lambda: worker._warm_up(DEFAULT_MAX_FRAME),
    )
    try:
        for step in steps:
            if port is not None and _frame_waiting(port):
                return
            step()
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
        sys.modules.pop(module, None)
        shutil.rmtree(folder, ignore_errors=True)


@functools.cache
def _rehearsal_files(module: str) -> dict[str, bytes]:
    """The throwaway module, and its bytecode as the platform sends a function's.

    Compiled in the template, before the snapshot: the compiler is the one part
    of a load a function's does not need in the guest.
    """
    source = REHEARSAL_SOURCE
    code = compile(source, f"{module}.py", "exec")
    pyc = importlib._bootstrap_external._code_to_hash_pyc(  # type: ignore[attr-defined]
        code, importlib.util.source_hash(source), False
    )
    return {f"{module}.py": source, f"__pycache__/{module}.{sys.implementation.cache_tag}.pyc": pyc}


def _frame_waiting(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return any(events & select.POLLIN for _, events in poller.poll(0))


def _make_folders() -> None:
    """The function's folders, its own once it runs as the unprivileged user."""
    for folder in (SCRATCH, CODE):
        os.makedirs(folder, mode=0o700, exist_ok=True)
        os.chown(folder, NOBODY, NOBODY)


def _drop_privileges() -> None:
    """The function runs as an unprivileged user: its RLIMIT_DATA then holds for good."""
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
