"""The platform's side of the zygote: its process, its control channel, its children.

``ZygoteClient`` starts ``python -m nfaas.sandboxes.zygote`` and asks it for
forks over the control channel (its packets are drawn in
``nfaas.sandboxes.zygote``); each fork comes back as a ``WorkerHandle``: the
platform's end of the worker's socket, and a pidfd through which the platform
kills it, never by pid, so a reused pid is never hit. The zygote reaps its
children and reports each exit here, which settles ``WorkerHandle.exited``, so a
sandbox can say how its worker ended (``describe_exit``): EVE025 7.2.3 steps
1-3 (prepare) as seen from the platform.

Platform-only: the zygote never imports this module, so asyncio is imported
here freely (it would add 9 MB to every fork of the zygote). The channel is the
zygote's, so ``pack`` and ``MAX_CONTROL_PACKET`` are imported from it; reading
packets with their fds (``recv_packet``) only the platform does, here.
"""

from __future__ import annotations

import array
import asyncio
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import msgpack

from nfaas.errors import BackendUnavailable, SandboxStartError
from nfaas.sandboxes.confinement import Confinement
from nfaas.sandboxes.zygote import MAX_CONTROL_PACKET, pack


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


@dataclass(slots=True)
class WorkerHandle:
    """One forked child as the platform holds it."""

    pid: int
    sock: socket.socket
    pidfd: int
    #: the child's exit status (negative: killed by that signal), as its zygote reports it
    exited: asyncio.Future[int]
    #: the uid (and gid) the child runs as, when confined
    uid: int | None = None
    #: the host's CLOCK_MONOTONIC minus the worker's: 0 on the host, not in a VM's guest
    clock_offset: float = 0.0

    def kill(self) -> None:
        if self.pidfd < 0:
            return
        try:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def release(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1


def describe_exit(status: int | None) -> str:
    """How a child ended, in words: "exited with status 3", "was killed by signal 9 (SIGKILL)"."""
    if status is None:
        return "ended (its exit status is unknown: its zygote had gone)"
    if status >= 0:
        return f"exited with status {status}"
    try:
        name = signal.Signals(-status).name
    except ValueError:
        name = "unknown signal"
    return f"was killed by signal {-status} ({name})"


class ZygoteClient:
    """The platform's handle on one zygote process and its control channel."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        control: socket.socket,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.process = process
        self._control = control
        self._loop = loop
        self._ready: asyncio.Future[int] = self._loop.create_future()
        self._forks: dict[int, asyncio.Future[WorkerHandle]] = {}
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._next_req = 0
        self.alive = True
        self._loop.add_reader(control.fileno(), self._on_readable)

    @classmethod
    async def start(
        cls,
        *,
        python: str,
        env: dict[str, str],
        max_frame: int,
        spares: int,
        namespaces: bool,
        timeout_s: float,
        confinement: Confinement | None = None,
        scratch: str | None = None,
        busy_uids: set[int] | None = None,
    ) -> ZygoteClient:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        args = ["--control-fd", str(theirs.fileno()), "--max-frame", str(max_frame)]
        args += ["--spares", str(spares)] + ([] if namespaces else ["--no-namespaces"])
        if confinement is not None:
            args += ["--confinement", confinement.encode()]
        if busy_uids:
            args += ["--busy-uids", ",".join(map(str, sorted(busy_uids)))]
        if scratch is not None:
            args += ["--scratch", scratch]
        try:
            process = await asyncio.create_subprocess_exec(
                # -P: the platform's working folder is not on the functions' path;
                # -B: code folders are content-addressed, never written to.
                *(python, "-u", "-B", "-P", "-s", "-m", "nfaas.sandboxes.zygote", *args),
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=sys.__stderr__.fileno() if sys.__stderr__ else subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # a ^C meant for the platform does not reach sandboxes
            )
        except OSError as exc:
            ours.close()
            raise BackendUnavailable(f"cannot start the zygote ({python}): {exc}") from exc
        finally:
            theirs.close()
        ours.setblocking(False)
        zygote = cls(process, ours, asyncio.get_running_loop())
        try:
            async with asyncio.timeout(timeout_s):
                await zygote._ready
        except BaseException as exc:
            await zygote.aclose()
            raise BackendUnavailable(f"the zygote did not start: {exc!r}") from exc
        return zygote

    async def fork(self) -> WorkerHandle:
        if not self.alive:
            raise SandboxStartError("the zygote has exited")
        self._next_req += 1
        req = self._next_req
        future: asyncio.Future[WorkerHandle] = self._loop.create_future()
        self._forks[req] = future
        try:
            try:
                await self._loop.sock_sendall(self._control, pack({"op": "fork", "req": req}))
            except OSError:  # it died before its end of the channel was seen to close
                self._lost()
            return await future
        finally:
            self._forks.pop(req, None)

    def _on_readable(self) -> None:
        while self.alive:
            try:
                message, fds = recv_packet(self._control)
            except BlockingIOError:
                return
            if message is None:
                self._lost()
                return
            self._dispatch(message, fds)

    def _dispatch(self, message: dict[str, Any], fds: list[int]) -> None:
        op = message.get("op")
        if op == "forked" and len(fds) == 2:
            pid = message["pid"]
            exited: asyncio.Future[int] = self._loop.create_future()
            self._exits[pid] = exited
            uid = message.get("uid")
            handle = WorkerHandle(pid, socket.socket(fileno=fds[0]), fds[1], exited, uid)
            future = self._forks.get(message["req"])
            if future is None or future.done():  # the prepare that asked was cancelled
                handle.kill()
                handle.release()
                handle.sock.close()
            else:
                future.set_result(handle)
            return
        for fd in fds:
            os.close(fd)
        if op == "exited":
            done = self._exits.pop(message["pid"], None)
            if done is not None and not done.done():
                done.set_result(message["status"])
        elif op == "fork_failed":
            future = self._forks.get(message["req"])
            if future is not None and not future.done():
                future.set_exception(SandboxStartError(f"fork failed: {message['message']}"))
        elif op == "ready" and not self._ready.done():
            self._ready.set_result(message["pid"])

    def _lost(self) -> None:
        """The channel closed: the zygote exited, or is being stopped."""
        if not self.alive:
            return
        self.alive = False
        self._loop.remove_reader(self._control.fileno())
        self._control.close()
        gone = SandboxStartError("the zygote exited")
        if not self._ready.done():
            self._ready.set_exception(gone)
        for pending in self._forks.values():
            if not pending.done():
                pending.set_exception(gone)
        # Its children live on (they only die with the platform), but nobody will
        # report their exits: the sandboxes see their ends as EOF, status unknown.
        self._exits.clear()
        if self._ready.done() and not self._ready.cancelled():
            self._ready.exception()  # mark retrieved: nobody may be waiting any more

    async def aclose(self) -> None:
        """Close the channel, which tells the zygote to kill its children and exit."""
        self._lost()
        try:
            async with asyncio.timeout(5.0):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
