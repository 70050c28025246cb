"""The zygote: a warm Python runtime that forks prepared workers on request.

The process backend starts it once as ``python -m nfaas.sandboxes.zygote
--control-fd N`` and keeps it. The zygote imports the worker runtime (and what
most functions import) ahead, so every child forked from it starts warm:
EVE025 7.2.3 steps 1-3 in about the cost of a fork.

The control channel is a SOCK_SEQPACKET socket, one msgpack map per packet::

    platform -> zygote   fork         req
    zygote -> platform   ready        pid                       once, at start
                         forked       req, pid, uid   + fds: the platform's end of the
                                                        worker's socketpair, a pidfd
                         fork_failed  req, message
                         exited       pid, status  (os.waitstatus_to_exitcode:
                                                    -N when killed by signal N)

The zygote polls a pidfd per child, reaps its children and reports each exit,
so a sandbox can say "exited with status 3" or "killed by signal 9". It runs no
function code. When the platform closes the channel (or dies), it kills its
children and exits. It keeps ``--spares`` children forked ahead (one by
default), so a prepare usually gets a child that is already up.

Confinement (``--confinement``, given when the platform runs as root). Each
child, right after its fork and before it runs anything else, becomes an
unprivileged process of its own: a uid from a range (and the same gid) that no
other live worker has, so that workers can neither signal nor trace one
another and RLIMIT_NPROC counts one worker's tasks; no supplementary groups;
rlimits set with hard == soft while still root (tasks, open files, file size,
a lifetime CPU cap, no core); ``no_new_privs``; then setresuid, which clears
every capability; then not dumpable. Prepared workers therefore wait in a pool
unprivileged, and the warm-up (``worker._warm_up``) runs unprivileged too. The
zygote is then a child subreaper, and so is each worker: whatever a worker
forks stays below it while it lives and comes to the zygote when it dies,
which kills and reaps it, so nothing a function started outlives its worker
and no zombie is left for an init that may never reap it. A uid goes back to
the end of the queue when its worker is reaped (round robin, so it is reused
as late as possible); ``--busy-uids`` are those held by live workers of a
zygote that died, which this one never hands out.

Every child makes its own scratch folder in ``--scratch``, mode 0700 and owned
by its uid, before it is handed out (so neither a prepare nor the platform's
event loop waits for the file system), and names it in its ``ready``. The
zygote removes ``--scratch`` once its children are gone and the platform has
closed the channel.

``ZygoteClient``, at the end, is the platform's side of the channel.

Kept deliberately small: a fork copies the page tables of everything mapped,
and the child then pays a copy-on-write fault (~7 us on a VM) for each page it
touches, so the zygote imports neither asyncio (+9 MB) nor threading, whose
at-fork hook alone cost each fork 0.7 ms when measured.
"""

from __future__ import annotations

import array
import errno
import gc
import json  # preloaded for functions, and the --confinement argument
import os
import resource
import select
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import msgpack

from nfaas.errors import BackendUnavailable, SandboxStartError
from nfaas.sandboxes import worker

if TYPE_CHECKING:
    import asyncio

#: packets on the control channel are small; this bounds one
MAX_CONTROL_PACKET = 4096
#: Linux clone flags (Python 3.11 has no os.unshare)
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
SANDBOX_HOSTNAME = b"nfaas"
#: a spare is forked once the channel has been quiet this long, so that the fork
#: does not compete for CPU with the cold start that just took the last spare
SPARE_REFILL_IDLE_MS = 10
#: past any fd a child can hold; os.closerange makes it one close_range(2)
MAX_FD = 1 << 20
#: prctl(2) options
PR_SET_DUMPABLE = 4
PR_GET_SECUREBITS = 27
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
#: securebits that would let capabilities survive setresuid (capabilities(7))
SECBIT_NO_SETUID_FIXUP = 1 << 2
SECBIT_KEEP_CAPS = 1 << 4
#: RLIMIT_NPROC from the fork until ``load`` lowers it to what the function may use:
#: room for the worker's threads at any concurrency a descriptor allows (<= 1024)
TASKS_UNTIL_LOAD = 2048


@dataclass(frozen=True, slots=True)
class Confinement:
    """What each worker becomes after its fork when the platform runs as root."""

    #: the uids of workers, one per live worker (its gid is the same number); they must
    #: belong to nobody else on the host (no user, no /etc/subuid range)
    uids: range = range(200_000, 210_000)
    #: processes and threads a function may start beyond the worker's own (RLIMIT_NPROC)
    tasks: int = 8
    #: RLIMIT_NOFILE
    open_files: int = 256
    #: the largest file a function may write, MB (RLIMIT_FSIZE)
    file_mb: int = 64
    #: CPU seconds one worker may use over its whole life (RLIMIT_CPU, a backstop: the
    #: per-invocation budget is enforced by the platform)
    lifetime_cpu_s: int = 86_400

    def __post_init__(self) -> None:
        if len(self.uids) == 0 or self.uids.step != 1 or self.uids.start <= 0:
            raise ValueError(f"worker uids must be a non-empty range above 0, not {self.uids}")

    def rlimits(self) -> dict[int, int]:
        """Every rlimit a child gets before it drops privileges, hard == soft."""
        return {
            resource.RLIMIT_NPROC: TASKS_UNTIL_LOAD,
            resource.RLIMIT_NOFILE: self.open_files,
            resource.RLIMIT_FSIZE: self.file_mb * 1024 * 1024,
            resource.RLIMIT_CPU: self.lifetime_cpu_s,
            resource.RLIMIT_CORE: 0,
        }

    def encode(self) -> str:
        values = {k: v for k, v in asdict(self).items() if k != "uids"}
        return json.dumps({"uids": [self.uids.start, self.uids.stop], **values})

    @classmethod
    def decode(cls, text: str) -> Confinement:
        values = json.loads(text)
        start, stop = values.pop("uids")
        return cls(uids=range(start, stop), **values)


class WorkerUids:
    """Hands out the uids of a range, one per live worker, in turn."""

    def __init__(self, uids: range, busy: set[int] | None = None) -> None:
        self._uids = uids
        self._next = 0
        #: ``busy`` are never given back: their workers are not this zygote's children
        self._in_use: set[int] = set(busy or ())

    def take(self) -> int:
        for _ in range(len(self._uids)):
            uid = self._uids[self._next]
            self._next = (self._next + 1) % len(self._uids)
            if uid not in self._in_use:
                self._in_use.add(uid)
                return uid
        raise OSError(errno.EAGAIN, f"all {len(self._uids)} worker uids are in use")

    def give_back(self, uid: int) -> None:
        self._in_use.discard(uid)


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
        self,
        control: socket.socket,
        max_frame: int,
        namespaces: bool,
        spares: int,
        confinement: Confinement | None = None,
        scratch: str | None = None,
        busy_uids: set[int] | None = None,
    ) -> None:
        self._control = control
        self._max_frame = max_frame
        #: pidfd -> pid of every live child; a pidfd polls readable when its child exits
        self._children: dict[int, int] = {}
        #: pidfd -> uid of every confined child
        self._uid_of: dict[int, int] = {}
        #: pidfd -> pid of what dead workers left behind, killed and waiting to be reaped
        self._orphans: dict[int, int] = {}
        #: children forked ahead: pidfd, and the zygote's end of the child's socketpair
        self._spares: list[tuple[int, socket.socket]] = []
        self._spare_target = spares
        self._unshare = _namespace_maker() if namespaces and os.geteuid() == 0 else None
        self._confinement = confinement
        self._uids = WorkerUids(confinement.uids, busy_uids) if confinement is not None else None
        self._confine = _confiner(confinement) if confinement is not None else None
        self._scratch = scratch
        self._children_file = f"/proc/self/task/{os.getpid()}/children"
        self._poller = select.poll()

    def run(self) -> None:
        """Serve fork requests until the platform closes the control channel."""
        gc.collect()
        gc.freeze()  # a child's collector then never touches (and copies) the zygote's objects
        self._control.send(pack({"op": "ready", "pid": os.getpid()}))
        try:
            self._serve()
        finally:
            self._stop_children()
        # Only once the platform is done with them: after a crash of this zygote, the
        # next one and the workers that outlive this one still use the scratch folders.
        if self._scratch is not None:
            import shutil

            shutil.rmtree(self._scratch, ignore_errors=True)

    def _serve(self) -> None:
        control = self._control.fileno()
        self._poller.register(control, select.POLLIN)
        while True:
            short = len(self._spares) < self._spare_target
            events = self._poller.poll(SPARE_REFILL_IDLE_MS if short else None)
            if not events:
                try:
                    self._spares.append(self._spawn())
                except OSError:
                    pass  # out of processes or worker uids: a prepare will say so
            for fd, _ in events:
                try:
                    if fd != control:
                        self._reap(fd)
                    elif not self._on_request():
                        return
                except ConnectionError:  # a report to a platform that has just gone
                    return

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
            pidfd, parent_end = self._spares.pop(0)
        else:
            try:
                pidfd, parent_end = self._spawn()
            except OSError as exc:
                self._control.send(pack({"op": "fork_failed", "req": req, "message": str(exc)}))
                return
        # The platform gets its own copy of the pidfd and kills through it, so a
        # reused pid is never hit; the child stays unreaped until this one polls.
        pid, uid = self._children[pidfd], self._uid_of.get(pidfd)
        message = pack({"op": "forked", "req": req, "pid": pid, "uid": uid})
        try:
            socket.send_fds(self._control, [message], [parent_end.fileno(), pidfd])
        finally:
            parent_end.close()

    def _spawn(self) -> tuple[int, socket.socket]:
        uid = self._uids.take() if self._uids is not None else None
        try:
            parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError:
            self._give_back(uid)
            raise
        try:
            pid = os.fork()
        except OSError:
            parent_end.close()
            child_end.close()
            self._give_back(uid)
            raise
        if pid == 0:
            self._become_worker(child_end, uid)
        child_end.close()
        pidfd = os.pidfd_open(pid)
        self._children[pidfd] = pid
        if uid is not None:
            self._uid_of[pidfd] = uid
        self._poller.register(pidfd, select.POLLIN)
        return pidfd, parent_end

    def _give_back(self, uid: int | None) -> None:
        if uid is not None and self._uids is not None:
            self._uids.give_back(uid)

    def _become_worker(self, child_end: socket.socket, uid: int | None) -> NoReturn:
        status = worker.EXIT_PROTOCOL
        try:
            # Drop every inherited fd but the worker's own socket and stdio: the
            # control channel, other workers' sockets, pidfds. One close_range(2)
            # each side; the socket objects behind them are never used again, as
            # this frame never returns.
            keep = child_end.fileno()
            os.closerange(3, keep)
            os.closerange(keep + 1, MAX_FD)
            os.setsid()
            namespaces = self._unshare() if self._unshare is not None else []
            status = worker.EXIT_CONFINEMENT  # never run on as root, whatever failed
            scratch = _make_scratch(self._scratch, uid) if self._scratch is not None else None
            tasks = None
            if self._confine is not None and self._confinement is not None:
                assert uid is not None
                self._confine(uid)
                tasks = self._confinement.tasks
            status = worker.EXIT_PROTOCOL
            worker.serve(child_end, self._max_frame, namespaces, tasks, scratch)
        except BaseException as exc:
            if status == worker.EXIT_CONFINEMENT:
                sys.stderr.write(f"nfaas: a worker could not be confined: {exc!r}\n")
        finally:
            os._exit(status)

    def _reap(self, pidfd: int) -> None:
        self._poller.unregister(pidfd)
        os.close(pidfd)
        orphan = self._orphans.pop(pidfd, None)
        if orphan is not None:
            _wait(orphan)
            self._sweep_orphans()  # its own children came to the zygote as it died
            return
        pid = self._children.pop(pidfd, None)
        self._give_back(self._uid_of.pop(pidfd, None))
        if pid is None:
            return
        self._spares = [spare for spare in self._spares if spare[0] != pidfd]
        _, status = os.waitpid(pid, 0)
        exit_code = os.waitstatus_to_exitcode(status)
        self._control.send(pack({"op": "exited", "pid": pid, "status": exit_code}))
        self._sweep_orphans()

    def _sweep_orphans(self) -> None:
        """Kill what dead workers left behind: their descendants, reparented here.

        Only a confined zygote is a subreaper, so only it ever has children that
        are not workers. Each is killed through a pidfd and reaped when it polls.
        """
        if self._confine is None:
            return
        known = set(self._children.values()) | set(self._orphans.values())
        for pid in self._child_pids() - known:
            try:
                # An unreaped child of ours: its pid cannot have been reused.
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._orphans[pidfd] = pid
            self._poller.register(pidfd, select.POLLIN)

    def _child_pids(self) -> set[int]:
        """Every unreaped child of the zygote (none known without CONFIG_PROC_CHILDREN)."""
        try:
            with open(self._children_file, "rb") as children:
                return {int(pid) for pid in children.read().split()}
        except OSError:
            return set()

    def _stop_children(self) -> None:
        """Kill and reap every child: workers, and what dying ones leave to the zygote."""
        pids = set(self._children.values()) | set(self._orphans.values())
        self._children.clear()
        self._orphans.clear()
        while pids:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)  # an unreaped child of ours: still that pid
                except ProcessLookupError:
                    pass
            for pid in pids:
                _wait(pid)
            pids = self._child_pids() if self._confine is not None else set()


def _make_scratch(root: str, uid: int | None) -> str:
    """A new private folder in ``root``, owned by ``uid`` when given."""
    folder = f"{root}/{os.urandom(6).hex()}"
    os.mkdir(folder, 0o700)
    if uid is not None:
        os.chown(folder, uid, uid)
    return folder


def _wait(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _confiner(confinement: Confinement) -> Callable[[int], None]:
    """A function that makes the calling child an unprivileged worker with uid = gid = its
    argument; and the zygote, which calls this, a child subreaper.

    Measured at about 0.25 ms per child, most of it the first touch of ctypes and
    resource pages after the fork; it runs before a child is handed out, so no
    cold start from a pool pays it.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    prctl.restype = ctypes.c_int
    securebits = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0)  # also warms ctypes' call path
    if securebits < 0 or securebits & (SECBIT_KEEP_CAPS | SECBIT_NO_SETUID_FIXUP):
        raise BackendUnavailable(
            f"securebits {securebits:#x} would let capabilities survive setresuid"
        )
    rlimits = list(confinement.rlimits().items())

    def call(option: int, value: int) -> None:
        if prctl(option, value, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), f"prctl({option}, {value})")

    call(PR_SET_CHILD_SUBREAPER, 1)  # the zygote inherits what dead workers leave

    def confine(uid: int) -> None:
        call(PR_SET_CHILD_SUBREAPER, 1)
        for which, limit in rlimits:  # while root, and hard == soft: never raised again
            resource.setrlimit(which, (limit, limit))
        call(PR_SET_NO_NEW_PRIVS, 1)  # no setuid binary nor file capability gives any back
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)  # from root to non-root: every capability goes
        call(PR_SET_DUMPABLE, 0)  # no ptrace, and its /proc files are root's

    return confine


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
    unshare.argtypes, unshare.restype = [ctypes.c_int], ctypes.c_int
    sethostname.argtypes, sethostname.restype = [ctypes.c_char_p, ctypes.c_size_t], ctypes.c_int
    unshare(0)  # a no-op that warms ctypes' call path here, once, instead of in every child

    def enter() -> list[str]:
        if unshare(CLONE_NEWIPC | CLONE_NEWUTS) != 0:
            return []
        sethostname(SANDBOX_HOSTNAME, len(SANDBOX_HOSTNAME))
        return ["ipc", "uts"]

    return enter


# -- the platform's side -------------------------------------------------------


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
    """The platform's handle on one zygote process and its control channel.

    asyncio is imported inside the methods that need it, not at the top: this
    module is also the zygote's program, and asyncio would add 9 MB to every fork.
    """

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
        import asyncio
        import subprocess

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
        import asyncio

        self._lost()
        try:
            async with asyncio.timeout(5.0):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


def main(argv: list[str] | None = None) -> None:
    """``--control-fd N --max-frame N [--spares N] [--no-namespaces] [--confinement JSON
    [--busy-uids N,N...]] [--scratch PATH]``.

    Parsed by hand: argparse would add to what every fork copies.
    """
    args = sys.argv[1:] if argv is None else argv

    def option(name: str) -> str | None:
        return args[args.index(name) + 1] if name in args else None

    try:
        control_fd = int(args[args.index("--control-fd") + 1])
        max_frame = int(args[args.index("--max-frame") + 1])
        spares = int(option("--spares") or 0)
        confined = option("--confinement")
        confinement = Confinement.decode(confined) if confined is not None else None
        busy = {int(uid) for uid in (option("--busy-uids") or "").split(",") if uid}
    except (ValueError, IndexError, TypeError, KeyError):
        sys.exit("usage: python -m nfaas.sandboxes.zygote --control-fd N --max-frame N")
    if confinement is not None and os.geteuid() != 0:
        sys.exit("the zygote confines its workers only when it runs as root")
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crashing function dumps no core
    control = socket.socket(fileno=control_fd)
    namespaces = "--no-namespaces" not in args
    scratch = option("--scratch")
    Zygote(control, max_frame, namespaces, spares, confinement, scratch, busy).run()


if __name__ == "__main__":
    main()
