"""One owning thread for the state store's SQLite connection.

The connection is opened with ``check_same_thread=False``, so SQLite itself would
let any thread use it -- and a thread-pool caller would then run its statements
inside whatever transaction the event loop's thread has open. ``ThreadOwner``
keeps the promise instead: calls from the owning thread pass; a call from any
other thread fails with ``StoreThreadError`` (``"refuse"``, the default: every
API route is async, so such a call is a bug), or waits until the owner is
between transactions (``"serialise"``, logged once; for embedders that must
call from worker threads).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Concatenate, Literal, ParamSpec, Protocol, TypeVar

log = logging.getLogger(__name__)

ForeignThreads = Literal["serialise", "refuse"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


class StoreThreadError(RuntimeError):
    """The store was called from a thread other than the one that owns it (a bug)."""


class ThreadOwner:
    """Records the thread that made it; ``turn()`` is held around each use."""

    def __init__(self, foreign_threads: ForeignThreads, what: str = "state store") -> None:
        self._owner = threading.get_ident()
        self._policy = foreign_threads
        self._what = what
        # Re-entrant: a method holding it calls others, and a transaction spans many.
        self._lock = threading.RLock()
        self._warned = False

    def turn(self) -> threading.RLock:
        if threading.get_ident() != self._owner:
            thread = threading.current_thread().name
            if self._policy == "refuse":
                raise StoreThreadError(
                    f"the {self._what} was called from thread {thread!r}; it belongs to the "
                    "event loop's thread (make the caller async)"
                )
            if not self._warned:
                self._warned = True
                log.warning(
                    "%s called from thread %r; its calls wait for the event loop thread's",
                    self._what,
                    thread,
                )
        return self._lock


class Owned(Protocol):
    _owner: ThreadOwner


_S = TypeVar("_S", bound=Owned)


def owned(method: Callable[Concatenate[_S, _P], _R]) -> Callable[Concatenate[_S, _P], _R]:
    """Run ``method`` only in its object's turn (see ``ThreadOwner``)."""

    @functools.wraps(method)
    def guarded(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._owner.turn():
            return method(self, *args, **kwargs)

    return guarded
