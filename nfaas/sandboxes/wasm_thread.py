"""The threads wasm sandboxes run on: one per sandbox, kept for the next when it closes.

A ``wasmtime.Store`` must never be used by two threads at once, so a sandbox whose
function does not run inline (``wasm_inline``) does every use of its store on one
thread of its own, a ``GuestThread``, one job at a time. A call into Wasm releases
the GIL, so a looping guest costs the event loop nothing.

Starting a thread costs more than the rest of a cold start, so the backend takes a
sandbox's thread in ``prepare`` (off the event's path) and ``SpareThreads`` keeps the
threads of closed sandboxes, up to a limit, for the next sandboxes.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class GuestThread:
    """A sandbox's own thread: runs jobs one at a time and hands results to the event loop.

    Lighter than a one-worker ``ThreadPoolExecutor`` (a queue and a callback per
    job), which matters on the cold path. A job whose awaiter was cancelled still
    runs to its end; its result is dropped.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[
            tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[[], Any]] | None
        ]
        self._jobs = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def run(self, job: Callable[[], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, future, job))
        return future

    def stop(self) -> None:
        """The thread ends after the jobs already queued."""
        self._jobs.put(None)

    def _serve(self) -> None:
        while (item := self._jobs.get()) is not None:
            self._run_one(*item)
            # No reference to the last job may outlive it: it would keep its sandbox alive.
            del item

    @staticmethod
    def _run_one(
        loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], job: Callable[[], Any]
    ) -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (job(), None)
        except BaseException as exc:
            outcome = (None, exc)
        try:
            loop.call_soon_threadsafe(_settle, future, *outcome)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is None:
        future.set_result(result)
    else:
        future.set_exception(exc)


class SpareThreads:
    """Threads of closed sandboxes, kept to spare the next sandbox a thread start.

    Used from the event loop only. New threads are named ``"<name> <n>"``.
    """

    def __init__(self, name: str, limit: int) -> None:
        self._name = name
        self._limit = limit
        self._spares: list[GuestThread] = []
        self._started = 0

    def take(self) -> GuestThread:
        """A spare thread if there is one, else a new one."""
        if self._spares:
            return self._spares.pop()
        self._started += 1
        return GuestThread(f"{self._name} {self._started}")

    def give_back(self, thread: GuestThread) -> None:
        """Keep ``thread`` for the next sandbox, or stop it if enough are kept already."""
        if len(self._spares) < self._limit:
            self._spares.append(thread)
        else:
            thread.stop()

    def stop_all(self) -> None:
        """Stop every spare thread; threads given back later are kept again."""
        spares, self._spares = self._spares, []
        for thread in spares:
            thread.stop()
