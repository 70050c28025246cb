"""Run a call inside a named network namespace (``ip netns`` style).

An XDP hook is an interface, and an interface lives in one network namespace
(EVE025 5.6: the eBPF VNF sits on the node's data path, which may be a
namespace of its own). Netlink requests and ``if_nametoindex`` act in the
caller's namespace, so attaching to a namespaced interface means making the
request from inside it. ``setns`` changes only the calling thread; a fresh
thread per call keeps the rest of the process, and the thread pool, where
they were. Sockets made inside stay in that namespace after the call returns.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = Path("/run/netns")


def netns_path(name: str) -> Path:
    """The bind mount ``ip netns add NAME`` makes; raises ``FileNotFoundError`` if none."""
    path = NETNS_RUN_DIR / name
    if "/" in name or not path.exists():
        raise FileNotFoundError(f"no network namespace named {name!r}")
    return path


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def run_in_netns(netns: str | None, fn: Callable[[], T]) -> T:
    """``fn()`` run in the network namespace ``netns`` (the caller's own if None)."""
    if netns is None:
        return fn()
    fd = os.open(netns_path(netns), os.O_RDONLY | os.O_CLOEXEC)
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            _setns(fd)
            result.append(fn())
        except BaseException as exc:
            error.append(exc)

    try:
        # the thread ends with the call, so its namespace never leaks to other work
        thread = threading.Thread(target=target, name=f"netns-{netns}", daemon=True)
        thread.start()
        thread.join()
    finally:
        os.close(fd)
    if error:
        raise error[0]
    return result[0]
