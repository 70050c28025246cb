"""The zygote: a warm Python runtime that forks prepared workers on request.

The process backend starts it once as ``python -m nfaas.sandboxes.zygote
--control-fd N`` and keeps it. The zygote imports the worker runtime (and what
most functions import) ahead, so every child forked from it starts warm:
EVE025 7.2.3 steps 1-3 in about the cost of a fork.

The control channel is a SOCK_SEQPACKET socket, one msgpack map per packet::

    platform -> zygote   fork         req
    zygote -> platform   ready        pid                       once, at start
                         forked       req, pid    + fds: the platform's end of the
                                                    worker's socketpair, a pidfd
                         fork_failed  req, message
                         exited       pid, status  (os.waitstatus_to_exitcode:
                                                    -N when killed by signal N)

The zygote reaps its children and reports each exit, so a sandbox can say
"exited with status 3" or "killed by signal 9". It runs no function code. When
the platform closes the channel (or dies), it kills its children and exits.

Kept deliberately small: a fork copies the page tables of everything mapped,
and the child then pays a copy-on-write fault (~7 us on a VM) for each page it
touches, so the zygote imports neither asyncio (+9 MB) nor threading, whose
at-fork hook alone cost each fork 0.7 ms when measured.
"""

from __future__ import annotations

import array
import gc
import json  # noqa: F401  preloaded for functions
import os
import resource
import select
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import msgpack

from nfaas.sandboxes import worker

#: packets on the control channel are small; this bounds one
MAX_CONTROL_PACKET = 4096
#: Linux clone flags (Python 3.11 has no os.unshare)
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
SANDBOX_HOSTNAME = b"nfaas"
#: a spare is forked once the channel has been quiet this long, so that the fork
#: does not compete for CPU with the cold start that just took the last spare
SPARE_REFILL_IDLE_MS = 10


def pack(message: dict[str, Any]) -> bytes:
    """One control packet."""
    packed: bytes = msgpack.packb(message, use_bin_type=True)
    return packed


def recv_packet(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """The next control packet and the fds it carries; (None, []) once the channel closed.

    The fds arrive close-on-exec, so no later subprocess of the platform inherits
    a worker's socket. Raises BlockingIOError on a non-blocking socket with nothing to read.
    """
    fds = array.array("i")
    try:
        data, ancillary, _, _ = sock.recvmsg(
            MAX_CONTROL_PACKET, socket.CMSG_SPACE(2 * fds.itemsize), socket.MSG_CMSG_CLOEXEC
        )
    except BlockingIOError:
        raise
    except OSError:
        return None, []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    message = msgpack.unpackb(data, raw=False)
    return (message if isinstance(message, dict) else {}), list(fds)


class Zygote:
    def __init__(
        self, control: socket.socket, max_frame: int, namespaces: bool, spares: int
    ) -> None:
        self._control = control
        self._max_frame = max_frame
        self._children: set[int] = set()
        #: children forked ahead, each with the zygote's end of its socketpair
        self._spares: list[tuple[int, socket.socket]] = []
        self._spare_target = spares
        self._unshare = _namespace_maker() if namespaces and os.geteuid() == 0 else None
        self._wakeup_r, self._wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def run(self) -> None:
        """Serve fork requests until the platform closes the control channel."""
        signal.set_wakeup_fd(self._wakeup_w)
        signal.signal(signal.SIGCHLD, _ignore_signal)
        gc.collect()
        gc.freeze()  # a child's collector then never touches (and copies) the zygote's objects
        self._control.send(pack({"op": "ready", "pid": os.getpid()}))
        poller = select.poll()
        poller.register(self._control, select.POLLIN)
        poller.register(self._wakeup_r, select.POLLIN)
        try:
            while True:
                short = len(self._spares) < self._spare_target
                events = poller.poll(SPARE_REFILL_IDLE_MS if short else None)
                if not events:
                    self._spares.append(self._spawn())
                for fd, _ in events:
                    if fd == self._wakeup_r:
                        self._reap()
                    elif not self._on_request():
                        return
        finally:
            self._stop_children()

    def _on_request(self) -> bool:
        try:
            data = self._control.recv(MAX_CONTROL_PACKET)
        except ConnectionError:
            data = b""
        if not data:
            return False
        request = msgpack.unpackb(data, raw=False)
        if request.get("op") == "fork":
            self._hand_out(request["req"])
        return True

    def _hand_out(self, req: int) -> None:
        """Give the platform a spare child, or a fresh fork when none is left."""
        if self._spares:
            pid, parent_end = self._spares.pop(0)
        else:
            try:
                pid, parent_end = self._spawn()
            except OSError as exc:
                self._control.send(pack({"op": "fork_failed", "req": req, "message": str(exc)}))
                return
        # The child cannot have been reaped yet (only _reap does that, and it drops
        # dead spares), so the pidfd names it for sure: the platform kills through
        # it, safe from pid reuse.
        pidfd = os.pidfd_open(pid)
        try:
            socket.send_fds(
                self._control,
                [pack({"op": "forked", "req": req, "pid": pid})],
                [parent_end.fileno(), pidfd],
            )
        finally:
            os.close(pidfd)
            parent_end.close()

    def _spawn(self) -> tuple[int, socket.socket]:
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid = os.fork()
        except OSError:
            parent_end.close()
            child_end.close()
            raise
        if pid == 0:
            self._become_worker(parent_end, child_end)
        child_end.close()
        self._children.add(pid)
        return pid, parent_end

    def _become_worker(self, parent_end: socket.socket, child_end: socket.socket) -> NoReturn:
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            # The child must never speak for the zygote, nor hold another worker's socket.
            self._control.close()
            parent_end.close()
            for _, spare_end in self._spares:
                spare_end.close()
            os.close(self._wakeup_r)
            os.close(self._wakeup_w)
            os.setsid()
            namespaces = self._unshare() if self._unshare is not None else []
            worker.serve(child_end, self._max_frame, namespaces)
        finally:
            os._exit(worker.EXIT_PROTOCOL)

    def _reap(self) -> None:
        try:
            while os.read(self._wakeup_r, 512):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._children.discard(pid)
            self._spares = [spare for spare in self._spares if spare[0] != pid]
            exit_code = os.waitstatus_to_exitcode(status)
            self._control.send(pack({"op": "exited", "pid": pid, "status": exit_code}))

    def _stop_children(self) -> None:
        for pid in self._children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in self._children:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def _ignore_signal(signum: int, frame: object) -> None:
    """SIGCHLD needs a handler for the wakeup fd to hear it; the poll loop does the work."""


def _namespace_maker() -> Callable[[], list[str]] | None:
    """A function that moves the calling child into new IPC and UTS namespaces.

    Measured at 60-90 us per child, against ~1 ms for the fork itself: the child
    then sees neither the host's SysV IPC objects nor its host name.
    """
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        unshare, sethostname = libc.unshare, libc.sethostname
    except (OSError, AttributeError):
        return None

    def enter() -> list[str]:
        if unshare(CLONE_NEWIPC | CLONE_NEWUTS) != 0:
            return []
        sethostname(SANDBOX_HOSTNAME, len(SANDBOX_HOSTNAME))
        return ["ipc", "uts"]

    return enter


def main(argv: list[str] | None = None) -> None:
    """``--control-fd N --max-frame N [--spares N] [--no-namespaces]``.

    Parsed by hand: argparse would add to what every fork copies.
    """
    args = sys.argv[1:] if argv is None else argv
    try:
        control_fd = int(args[args.index("--control-fd") + 1])
        max_frame = int(args[args.index("--max-frame") + 1])
        spares = int(args[args.index("--spares") + 1]) if "--spares" in args else 0
    except (ValueError, IndexError):
        sys.exit("usage: python -m nfaas.sandboxes.zygote --control-fd N --max-frame N")
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crashing function dumps no core
    control = socket.socket(fileno=control_fd)
    Zygote(control, max_frame, "--no-namespaces" not in args, spares).run()


if __name__ == "__main__":
    main()
