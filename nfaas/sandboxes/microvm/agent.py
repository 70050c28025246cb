"""The guest agent: runs inside a microVM and serves one function over a virtio port.

``/init`` starts it as ``python3.11 -m nfaas.sandboxes.microvm.agent /dev/vport0p1``.
It speaks the process backend's worker protocol (``nfaas.sandboxes.worker``,
unchanged) on the virtio-serial port, after a short handshake of its own:

1. boot: warm the runtime (imports, one throwaway load and invoke), then send
   ``booted`` and block reading the port. The platform snapshots the VM here,
   once per runtime image (EVE025 7.2.3 steps 1-3 done once for all).
2. every VM restored from that snapshot resumes in that read. The platform
   sends ``hello``; the agent answers ``hello`` with its ``time.monotonic()``
   (the guest's clock is not the host's: the platform converts deadlines and
   first-line times with the difference), as many times as the platform asks
   (the first answer of a restored guest is slow: nothing of it is translated
   yet, under TCG), and becomes the worker, as the unprivileged user it
   switched to before the snapshot: ``ready``, ``load`` (the code travels in
   the load frame, as ``files``), ``invoke``...

The port is a character device, not a socket: ``PortChannel`` gives the
worker the few socket methods it uses. A read of 0 bytes means the host side
is not connected (yet: a VM restored before the platform reached its port),
so until ``hello`` the agent waits and reads again.
"""

from __future__ import annotations

import contextlib
import functools
import importlib._bootstrap_external
import importlib.util
import os
import select
import shutil
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from nfaas.sandboxes import worker
from nfaas.sandboxes.protocol import DEFAULT_MAX_FRAME, recv_message, send_message

if TYPE_CHECKING:
    import socket

#: the unprivileged user the function runs as inside the guest
NOBODY = 65534
SCRATCH = "/tmp/scratch"
CODE = "/tmp/code"
#: how long to wait before reading again while the host is not connected
RECONNECT_POLL_S = 0.002
REHEARSAL = "/tmp/rehearsal"
REHEARSAL_SOURCE = b"def handle(event, context):\n    return {'body': event.text()}\n"
REHEARSAL_IDENTITY = {"app": "", "name": "", "version": "", "instance_id": ""}


class PortChannel:
    """A virtio-serial port with the socket methods the worker protocol calls."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def recv_into(self, buffer: memoryview) -> int:
        return os.readv(self._fd, [buffer])

    def recvmsg_into(
        self, buffers: list[memoryview], ancbufsize: int = 0, flags: int = 0
    ) -> tuple[int, list[Any], int, None]:
        return os.readv(self._fd, buffers), [], 0, None

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]


class _WaitingChannel(PortChannel):
    """Before ``hello``: a read of nothing means "no host yet", not "host gone"."""

    def recv_into(self, buffer: memoryview) -> int:
        while (n := super().recv_into(buffer)) == 0:
            time.sleep(RECONNECT_POLL_S)
        return n


def main(argv: list[str]) -> int:
    port = argv[1] if len(argv) > 1 else "/dev/vport0p1"
    fd = os.open(port, os.O_RDWR)
    sock = cast("socket.socket", PortChannel(fd))
    _drop_privileges()
    _rehearse(0)
    _rehearsal_files("_nfaas_rehearsal_1")  # compiled now, kept in the snapshot
    send_message(sock, {"op": "booted", "pid": os.getpid()}, DEFAULT_MAX_FRAME)
    # The snapshot is taken here; every restored VM resumes in this read.
    waiting = cast("socket.socket", _WaitingChannel(fd))
    while True:  # the host asks the time until it has a sample with a short round trip
        hello = recv_message(waiting, DEFAULT_MAX_FRAME)
        if hello is None or hello.get("op") != "hello":
            return worker.EXIT_PROTOCOL
        reply = {"op": "hello", "id": hello["id"], "monotonic": time.monotonic()}
        send_message(sock, reply, DEFAULT_MAX_FRAME)
        if hello.get("last", True):
            break
    max_frame = int(hello.get("max_frame", DEFAULT_MAX_FRAME))
    idle = functools.partial(_rehearse, 1, fd)
    worker.serve(sock, max_frame, ["vm"], scratch=SCRATCH, warm_up=False, idle=idle)


def _rehearse(round_: int, port: int | None = None) -> None:
    """Go through a load and an invocation of a throwaway function, files and all.

    Before the snapshot, so the guest has everything they touch in memory; and in
    each restored VM after ``ready``, while it waits in a pool, since under TCG code
    runs slowly the first time after a restore (QEMU translates it again: its
    translations are not in the snapshot). With ``port``, each step first looks
    whether the platform has sent something (a ``load`` that arrived at once, on
    the cold path): then the rehearsal stops and the function goes first.
    """
    module = f"_nfaas_rehearsal_{round_}"
    folder = f"{REHEARSAL}-{round_}"
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

    Compiled before the snapshot (``_rehearse(0)`` asks for round 1's too): the
    compiler is the one part of a load a function's does not need in the guest.
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


def _drop_privileges() -> None:
    """The function runs as an unprivileged user: its RLIMIT_DATA then holds for good."""
    for folder in (SCRATCH, CODE):
        os.makedirs(folder, mode=0o700, exist_ok=True)
        os.chown(folder, NOBODY, NOBODY)
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
