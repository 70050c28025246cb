"""What confines a process-backend worker: its uid, rlimits, namespaces and scratch folder.

EVE025 7.2.1.2: a container gives each function instance an isolated runtime
environment "through namespaces and resource limits, ensuring that different
functions do not interfere with each other"; a forked worker gets the same from
the kernel directly. When the platform runs as root (``Confinement``, given to
the zygote as ``--confinement``), each child, right after its fork and before
it runs anything else, becomes an unprivileged process of its own
(``confiner``): a uid from a range (and the same gid) that no other live worker
has (``WorkerUids``), so that workers can neither signal nor trace one another
and RLIMIT_NPROC counts one worker's tasks; no supplementary groups; rlimits
set with hard == soft while still root (tasks, open files, file size, a
lifetime CPU cap, no core); ``no_new_privs``; then setresuid, which clears
every capability; then not dumpable. The zygote is then a child subreaper, and
so is each worker, so nothing a function started outlives its worker. A uid
goes back to the end of the queue when its worker is reaped (round robin, so it
is reused as late as possible). The range must belong to nobody else on the
host (``uid_conflicts``, checked by the platform).

A confined worker then cannot read what only root may (the operator token, the
state database), write outside its scratch folder and world-writable places,
signal or trace the platform, the zygote or another worker, or fork without
bound. New IPC and UTS namespaces (``namespace_maker``, when the zygote runs as
root and ``ProcessConfig.namespaces`` holds) hide the host's SysV IPC objects
and host name. Every instance gets a scratch folder of its own
(``make_scratch``: mode 0700, owned by its worker's uid), which the platform
removes once the worker has ended (``remove_scratch``).

The zygote imports this module, so it imports neither asyncio nor threading
(see ``nfaas.sandboxes.zygote``: either would slow every fork) and takes
ctypes, shutil, grp and pwd only inside the functions that need them.
"""

from __future__ import annotations

import errno
import json
import os
import resource
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from nfaas.errors import BackendUnavailable

#: Linux clone flags (Python 3.11 has no os.unshare)
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
SANDBOX_HOSTNAME = b"nfaas"
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


def confiner(confinement: Confinement) -> Callable[[int], None]:
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


def namespace_maker() -> Callable[[], list[str]] | None:
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


# -- scratch folders -----------------------------------------------------------


def make_scratch(root: str, uid: int | None) -> str:
    """A new private folder in ``root``, owned by ``uid`` when given."""
    folder = f"{root}/{os.urandom(6).hex()}"
    os.mkdir(folder, 0o700)
    if uid is not None:
        os.chown(folder, uid, uid)
    return folder


def remove_scratch(folder: Path) -> None:
    """Remove a scratch folder, whatever its worker left in it."""
    try:
        folder.rmdir()  # most functions write nothing: 20 us, where rmtree takes 300
    except OSError:
        import shutil  # the platform's side only: the zygote need not import it

        # rmtree walks by fd and never follows a link, whatever the worker left there
        shutil.rmtree(folder, ignore_errors=True)


# -- the platform's side -------------------------------------------------------


def uid_conflicts(uids: range) -> list[str]:
    """Users, groups and subordinate ids (/etc/subuid, /etc/subgid) that hold any of
    ``uids`` (a worker's gid is its uid). A worker given one would be that user or
    group, or a user of some container."""
    import grp
    import pwd

    found = [f"user {user.pw_name}" for user in pwd.getpwall() if user.pw_uid in uids]
    found += [f"group {group.gr_name}" for group in grp.getgrall() if group.gr_gid in uids]
    for table in ("/etc/subuid", "/etc/subgid"):
        try:
            lines = Path(table).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            owner, _, span = line.partition(":")
            first, _, count = span.partition(":")
            if first.isdigit() and count.isdigit():
                if int(first) < uids.stop and uids.start < int(first) + int(count):
                    found.append(f"{table} range of {owner}")
    return found
