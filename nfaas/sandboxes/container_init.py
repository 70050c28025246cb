"""The first process of a container: forks the worker, reaps everything, reports the exit.

The container backend runs ``python -m nfaas.sandboxes.container_init`` as the
container's process (PID 1 of its PID namespace), with two inherited fds
(``runc --preserve-fds 2``): fd 3 is the worker's end of its socketpair, fd 4
the write end of a status pipe. It forks the worker, which serves the worker
protocol on fd 3 exactly as a process-backend worker does
(``nfaas.sandboxes.worker.serve``), then reaps every process of the namespace
until the worker has ended, writes the worker's exit status on fd 4 (a
little-endian int32: ``os.waitstatus_to_exitcode``, -N when killed by signal
N) and exits, which ends the namespace and everything left in it.

Why a process of its own rather than the worker as PID 1: the kernel ignores
every signal the init of a namespace has no handler for, so a function's own
``abort()`` would not end it; the init also reaps whatever a function forks;
and a detached runc container is nobody's child, so without the status pipe
the platform could not say how the worker ended (EVE025 7.2.3: the platform
reports crashes with their cause).
"""

from __future__ import annotations

import os
import socket
import struct
import sys

from nfaas.sandboxes import worker

SOCKET_FD = 3
STATUS_FD = 4
STATUS = struct.Struct("<i")
#: the namespaces a containerised worker has of its own, said in its ``ready``
NAMESPACES = ["pid", "mnt", "net", "ipc", "uts"]


def main(argv: list[str]) -> None:
    """``--max-frame N``: the worker protocol's frame limit."""
    max_frame = int(argv[argv.index("--max-frame") + 1])
    pid = os.fork()
    if pid == 0:
        os.close(STATUS_FD)
        worker.serve(socket.socket(fileno=SOCKET_FD), max_frame, NAMESPACES)
    os.close(SOCKET_FD)  # the platform must see EOF when the worker's end closes
    while True:
        try:
            reaped, status = os.wait()
        except ChildProcessError:
            status, reaped = 0, pid
        if reaped == pid:
            break
    code = os.waitstatus_to_exitcode(status)
    try:
        os.write(STATUS_FD, STATUS.pack(code))
    except OSError:
        pass  # the platform has gone: nobody is left to tell
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
