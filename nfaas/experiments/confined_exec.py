"""Exec a program confined as a process-backend worker is: ``python -m ... UID -- ARGV``.

The broker's process form (``nfaas.experiments.broker``) starts mosquitto through
this small launcher rather than with a ``preexec_fn``, which is unsafe in a
threaded parent. Before the exec it takes the process backend's rlimits
(``Confinement.rlimits``, hard == soft), new IPC and UTS namespaces, no
supplementary groups, ``no_new_privs`` and, when run by root, the uid and gid
``UID``, which clears every capability. It imports nothing that starts threads.
"""

from __future__ import annotations

import ctypes
import os
import resource
import sys

from nfaas.sandboxes.confinement import PR_SET_NO_NEW_PRIVS, Confinement, namespace_maker


def confine(uid: int, confinement: Confinement) -> None:
    for which, limit in confinement.rlimits().items():
        resource.setrlimit(which, (limit, limit))
    if os.geteuid() == 0:
        enter = namespace_maker()
        if enter is not None:
            enter()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        sys.exit("usage: python -m nfaas.experiments.confined_exec UID -- PROGRAM [ARG...]")
    confine(int(argv[0]), Confinement())
    os.execv(argv[2], argv[2:])


if __name__ == "__main__":
    main(sys.argv[1:])
