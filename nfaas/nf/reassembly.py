"""The bytestream operator: TCP segments put back in order, per direction of each flow.

``Reassemble(on_data)`` passes every packet on unchanged and, for each TCP
flow direction (keyed by its directional flow hash), calls ``on_data(flow,
data, ctx)`` with each new run of in-order bytes, and once with ``b""`` when
the stream ends (FIN reached in order, or RST). Retransmitted and overlapping
bytes are delivered once; segments ahead of a gap wait, up to
``max_buffered`` bytes per stream (past that the stream's buffer is dropped
and counted as ``<name>.overflow``, and delivery resumes at the next segment).
A stream picked up without its SYN starts at the first segment seen. Streams
idle for ``idle_timeout_s`` are forgotten.

This operator walks packets one by one: reassembly is sequential by nature,
which is why NetBricks, too, gives it a per-flow state machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from nfaas.nf.batch import PacketBatch
from nfaas.nf.flowhash import flow_hashes
from nfaas.nf.headers import IPPROTO_TCP
from nfaas.nf.operators import Operator, Outputs

if TYPE_CHECKING:
    from nfaas.nf.context import NFContext

StreamCallback = Callable[[int, bytes, "NFContext"], Any]

FIN, SYN, RST = 0x01, 0x02, 0x04
_MOD = 1 << 32


def _after(a: int, b: int) -> int:
    """How far sequence number ``a`` is past ``b`` (negative if before), modulo 2**32."""
    d = (a - b) % _MOD
    return d - _MOD if d >= 1 << 31 else d


@dataclass
class _Stream:
    next_seq: int | None = None
    #: seq -> (data, fin)
    waiting: dict[int, tuple[bytes, bool]] = field(default_factory=dict)
    buffered: int = 0
    last_seen: float = 0.0
    ended: bool = False


class Reassemble(Operator):
    kind = "reassemble"

    def __init__(
        self, on_data: StreamCallback, *, max_buffered: int = 1 << 16,
        idle_timeout_s: float = 120.0, name: str = "",
    ) -> None:  # fmt: skip
        super().__init__(name)
        self.on_data = on_data
        self.max_buffered = max_buffered
        self.idle_timeout_s = idle_timeout_s

    def _streams(self, ctx: NFContext) -> dict[int, _Stream]:
        streams: dict[int, _Stream] = ctx.private.setdefault(self.name, {})
        sweep_key = f"{self.name}.swept"
        if ctx.now - ctx.private.get(sweep_key, ctx.now) > self.idle_timeout_s:
            for key in [
                k for k, s in streams.items() if ctx.now - s.last_seen > self.idle_timeout_s
            ]:
                del streams[key]
            ctx.private[sweep_key] = ctx.now
        ctx.private.setdefault(sweep_key, ctx.now)
        return streams

    def run(self, batch: PacketBatch, ctx: NFContext, out: Outputs) -> PacketBatch:
        streams = self._streams(ctx)
        tcp = np.flatnonzero(batch.headers["proto"] == IPPROTO_TCP)
        if not len(tcp):
            return batch
        keys = flow_hashes(np.take(batch.headers, tcp)).tolist()
        failed = np.zeros(len(batch), dtype=np.bool_)
        for row, key in zip(tcp.tolist(), keys, strict=True):
            h = batch.headers[row]
            stream = streams.setdefault(key, _Stream())
            stream.last_seen = ctx.now
            try:
                self._segment(
                    stream, key, int(h["seq"]), int(h["tcp_flags"]), batch.payload(row), ctx
                )
            except Exception:
                failed[row] = True
            if stream.ended:
                streams.pop(key, None)
        if failed.any():
            ctx.counters.add(f"{self.name}.errors", int(failed.sum()))
            return batch.select(~failed)
        return batch

    def _segment(
        self, s: _Stream, key: int, seq: int, flags: int, data: bytes, ctx: NFContext
    ) -> None:
        if flags & RST:
            s.ended = True
            self.on_data(key, b"", ctx)
            return
        if flags & SYN:
            s.next_seq, s.waiting, s.buffered = (seq + 1) % _MOD, {}, 0
            seq = (seq + 1) % _MOD
        if s.next_seq is None:
            s.next_seq = seq
        fin = bool(flags & FIN)
        if not data and not fin:
            return
        ahead = _after(seq, s.next_seq)
        if ahead > 0:
            if s.buffered + len(data) <= self.max_buffered:
                if seq not in s.waiting:
                    s.waiting[seq] = (data, fin)
                    s.buffered += len(data)
                return
            # too much ahead of a gap: give the gap up and go on from this segment
            ctx.counters.add(f"{self.name}.overflow")
            s.waiting, s.buffered, s.next_seq, ahead = {}, 0, seq, 0
        self._deliver(s, key, data, fin, ctx, -ahead)
        while s.waiting and not s.ended:
            now_at = s.next_seq
            assert now_at is not None
            ready = sorted((_after(q, now_at), q) for q in s.waiting if _after(q, now_at) <= 0)
            if not ready:
                break
            for _, q in ready:
                data, fin = s.waiting.pop(q)
                s.buffered -= len(data)
                self._deliver(s, key, data, fin, ctx, -_after(q, s.next_seq or 0))

    def _deliver(
        self, s: _Stream, key: int, data: bytes, fin: bool, ctx: NFContext, seen: int
    ) -> None:
        """Deliver what of ``data`` is new: its first ``seen`` bytes were delivered before."""
        if seen > len(data) or s.ended:  # wholly a retransmission
            return
        assert s.next_seq is not None
        fresh = data[seen:]
        if fresh:
            s.next_seq = (s.next_seq + len(fresh)) % _MOD
            self.on_data(key, fresh, ctx)
        if fin:
            s.ended = True
            self.on_data(key, b"", ctx)
