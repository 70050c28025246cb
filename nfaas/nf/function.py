"""An NF as the handler of an ordinary nfaas Python function.

    from nfaas.nf.function import NFFunction
    handle = NFFunction(build_firewall(), mode="datagram")     # handler: firewall:handle

Events from a UDP or TCP port trigger become packets (``nfaas.nf.io.datagram``);
a timer event runs the NF's due timers; an HTTP or ``invoke`` event answers the
instance's counters and tables as JSON.

Batching. With ``scaling.concurrency`` above 1, the sandbox runs that many
handler calls at once, on threads. Each call puts its event in a queue and
waits for the one NF instance: whoever gets it processes every event queued
by then (up to ``max_batch``) as one batch and hands each call its answer.
Under load, batches grow by themselves; alone, an event waits for nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from nfaas.nf.batch import PacketBatch
from nfaas.nf.io.datagram import DEFAULT_LOCAL, join_tunnel, packets_from_events, split_tunnel
from nfaas.nf.pipeline import DEFAULT_PORT, NetworkFunction, NFInstance

Mode = Literal["datagram", "tunnel"]
Item = tuple[str, bytes, dict[str, Any]]


@dataclass
class _Waiter:
    item: Item
    done: bool = False
    answer: bytes = b""
    error: BaseException | None = None


class EventBatcher:
    """Processes the items of concurrent callers in batches, one batch at a time."""

    def __init__(self, process: Callable[[Sequence[Item]], list[bytes]], max_batch: int) -> None:
        self._process = process
        self._max_batch = max_batch
        self._queue_lock = threading.Lock()
        self._queue: list[_Waiter] = []
        self._turn = threading.Lock()
        #: sizes of the batches processed, for the instance's stats
        self.batches = 0
        self.items = 0

    def submit(self, item: Item) -> bytes:
        waiter = _Waiter(item)
        with self._queue_lock:
            self._queue.append(waiter)
        with self._turn:
            if not waiter.done:
                self._run_batch()
        if waiter.error is not None:
            raise waiter.error
        return waiter.answer

    def _run_batch(self) -> None:
        with self._queue_lock:
            taken, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
        try:
            answers = self._process([w.item for w in taken])
        except BaseException as exc:
            answers = []
            for w in taken:
                w.error = exc
        for w, answer in zip(taken, answers, strict=False):
            w.answer = answer
        for w in taken:
            w.done = True
        self.batches += 1
        self.items += len(taken)

    def locked(self) -> threading.Lock:
        """The NF's turn: hold it to touch the instance outside a batch (timers, stats)."""
        return self._turn


class NFFunction:
    """``handle(event, context)`` for an NF; one NF instance per function instance."""

    def __init__(
        self,
        nf: NetworkFunction,
        *,
        mode: Mode = "datagram",
        max_batch: int = 256,
        local_address: str = DEFAULT_LOCAL,
        port: str = DEFAULT_PORT,
    ) -> None:
        self.instance: NFInstance = nf.instance()
        self.mode = mode
        self.port = port
        self.local_address = local_address
        self.batcher = EventBatcher(self._process, max_batch)

    def __call__(self, event: Any, context: Any) -> bytes | dict[str, Any] | None:
        if event.trigger == "timer":
            with self.batcher.locked():
                self.instance.tick()
            return None
        if event.trigger in ("udp", "tcp"):
            return self.batcher.submit((event.trigger, bytes(event.body), dict(event.meta)))
        with self.batcher.locked():
            stats = self.instance.stats()
        stats["batches"] = {"count": self.batcher.batches, "events": self.batcher.items}
        return stats

    def _process(self, items: Sequence[Item]) -> list[bytes]:
        batch = self._packets(items)
        out = self.instance.process(batch).get(self.port, PacketBatch.empty())
        answers: list[list[bytes]] = [[] for _ in items]
        if len(out):
            owners = out.meta["event"].tolist()
            if self.mode == "tunnel":
                for owner, frame in zip(owners, out.frames(), strict=True):
                    answers[owner].append(frame)
            else:
                for row, owner in enumerate(owners):
                    answers[owner].append(out.payload(row))
        if self.mode == "tunnel":
            return [join_tunnel(frames) for frames in answers]
        return [b"".join(parts) for parts in answers]

    def _packets(self, items: Sequence[Item]) -> PacketBatch:
        if self.mode == "datagram":
            return packets_from_events(items, self.local_address)
        frames: list[bytes] = []
        owners: list[int] = []
        for index, (_, body, _) in enumerate(items):
            got, leftover = split_tunnel(body)
            if leftover:
                self.instance.counters.add("malformed.tunnel", 1)
            frames.extend(got)
            owners.extend([index] * len(got))
        batch = PacketBatch.from_frames(frames)
        batch.meta["event"] = np.array(owners, dtype=np.int64)
        return batch
