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

Confinement (``--confinement``, given when the platform runs as root; what it
does is ``nfaas.sandboxes.confinement``). Each child, right after its fork and
before it runs anything else, becomes an unprivileged process with a uid of
its own, so prepared workers wait in a pool unprivileged, and the warm-up
(``worker._warm_up``) runs unprivileged too. The zygote is then a child
subreaper, and so is each worker: whatever a worker forks stays below it while
it lives and comes to the zygote when it dies, which kills and reaps it, so
nothing a function started outlives its worker and no zombie is left for an
init that may never reap it. ``--busy-uids`` are those held by live workers of
a zygote that died, which this one never hands out.

Every child makes its own scratch folder in ``--scratch``, mode 0700 and owned
by its uid, before it is handed out (so neither a prepare nor the platform's
event loop waits for the file system), and names it in its ``ready``. The
zygote removes ``--scratch`` once its children are gone and the platform has
closed the channel.

``nfaas.sandboxes.zygote_client`` is the platform's side of the channel.

Kept deliberately small: a fork copies the page tables of everything mapped,
and the child then pays a copy-on-write fault (~7 us on a VM) for each page it
touches, so the zygote imports neither asyncio (+9 MB) nor threading, whose
at-fork hook alone cost each fork 0.7 ms when measured.
"""

from __future__ import annotations

import gc
import json  # noqa: F401  preloaded for functions (and Confinement's wire form)
import os
import resource
import select
import signal
import socket
import sys
from typing import Any, NoReturn

import msgpack

from nfaas.sandboxes import worker
from nfaas.sandboxes.confinement import (
    Confinement,
    WorkerUids,
    confiner,
    make_scratch,
    namespace_maker,
)

#: packets on the control channel are small; this bounds one
MAX_CONTROL_PACKET = 4096
#: a spare is forked once the channel has been quiet this long, so that the fork
#: does not compete for CPU with the cold start that just took the last spare
SPARE_REFILL_IDLE_MS = 10
#: past any fd a child can hold; os.closerange makes it one close_range(2)
MAX_FD = 1 << 20


def pack(message: dict[str, Any]) -> bytes:
    """One control packet."""
    packed: bytes = msgpack.packb(message, use_bin_type=True)
    return packed


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
        self._unshare = namespace_maker() if namespaces and os.geteuid() == 0 else None
        self._confinement = confinement
        self._uids = WorkerUids(confinement.uids, busy_uids) if confinement is not None else None
        self._confine = confiner(confinement) if confinement is not None else None
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
            scratch = make_scratch(self._scratch, uid) if self._scratch is not None else None
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


def _wait(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


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
