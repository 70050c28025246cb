"""A batch of packets: one byte buffer, where each frame starts and how long it is.

Selecting packets (a filter, a group-by branch) copies only the offsets, the
lengths, the header rows and the metadata columns; the frames stay in the
buffer they arrived in, which every selection of one batch shares. A batch
always keeps ``PARSE_REACH`` zero bytes after its last frame, so the
vectorised parse may read a fixed distance past any frame's start.

``meta`` holds per-packet columns an NF adds (``map``): a back-end index, the
flow hash, an arrival time; ``dirty`` marks packets whose header fields were
changed and must be written back (deparse).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from nfaas.nf import checksum
from nfaas.nf.headers import (
    HEADER,
    PARSE_REACH,
    ByteArray,
    HeaderArray,
    IntArray,
    ParseError,
    deparse,
    parse,
)

Selection = npt.NDArray[np.bool_] | IntArray
_PADDING = bytes(PARSE_REACH)


@dataclass(slots=True, eq=False)
class PacketBatch:
    buf: ByteArray
    offsets: IntArray
    lengths: IntArray
    headers: HeaderArray = field(default_factory=lambda: np.zeros(0, dtype=HEADER))
    meta: dict[str, npt.NDArray[np.generic]] = field(default_factory=dict)
    dirty: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=np.bool_))
    parsed: bool = False

    # -- making and reading -------------------------------------------------------

    @classmethod
    def from_frames(cls, frames: Sequence[bytes | bytearray | memoryview]) -> PacketBatch:
        lengths = np.fromiter(map(len, frames), dtype=np.int64, count=len(frames))
        return cls.from_buffer(b"".join(frames), lengths)

    @classmethod
    def from_buffer(cls, data: bytes | bytearray, lengths: IntArray) -> PacketBatch:
        """Frames laid end to end in ``data``, of ``lengths`` bytes each."""
        padded = bytearray(data)
        padded.extend(_PADDING)
        buf = np.frombuffer(padded, dtype=np.uint8)
        offsets = np.zeros(len(lengths), dtype=np.int64)
        if len(lengths) > 1:
            np.cumsum(lengths[:-1], out=offsets[1:])
        return cls(buf, offsets, np.asarray(lengths, dtype=np.int64))

    @classmethod
    def empty(cls) -> PacketBatch:
        return cls.from_frames([])

    def __len__(self) -> int:
        return len(self.offsets)

    def frame(self, i: int) -> bytes:
        start = int(self.offsets[i])
        return self.buf[start : start + int(self.lengths[i])].tobytes()

    def frames(self) -> list[bytes]:
        """Every frame as bytes (a copy each: for sinks, which hand frames to the kernel)."""
        data = self.buf.tobytes()
        ends = self.offsets + self.lengths
        return [data[a:b] for a, b in zip(self.offsets.tolist(), ends.tolist(), strict=True)]

    def payload(self, i: int) -> bytes:
        """The L4 payload of packet ``i`` up to the IP length (after ``parse``)."""
        row = self.headers[i]
        start = int(self.offsets[i]) + int(row["payload"])
        end = int(self.offsets[i]) + int(row["l3"]) + int(row["ip_len"])
        return self.buf[start:end].tobytes()

    # -- header processing --------------------------------------------------------

    def parse(self) -> npt.NDArray[np.uint8]:
        """Fill ``headers``; returns the ``ParseError`` code of every packet."""
        self.headers, errors = parse(self.buf, self.offsets, self.lengths)
        self.dirty = np.zeros(len(self), dtype=np.bool_)
        self.parsed = True
        return errors

    def deparse(self) -> int:
        """Write changed header fields back and bring their checksums up to date; returns
        how many packets changed.

        The checksums are updated from the changed words alone (RFC 1624), so the cost
        does not grow with the payload. Packets whose checksum a port left to offload
        (``checksum_pending``) get theirs computed in full.
        """
        rows = np.flatnonzero(self.dirty)
        if len(rows):
            old = checksum.field_sums(self.buf, self.offsets, self.headers, rows)
            deparse(self.buf, self.offsets, self.headers, rows)
            checksum.update(self.buf, self.offsets, self.headers, rows, old)
            self.dirty[rows] = False
        pending = self.meta.get("checksum_pending")
        if pending is not None and pending.any():
            self.fix_checksums(np.flatnonzero(pending))
            self.meta["checksum_pending"] = np.zeros(len(self), dtype=np.bool_)
        return len(rows)

    def fix_checksums(self, rows: IntArray | None = None) -> None:
        """Compute the checksums of ``rows`` (all packets if None) from scratch."""
        which = np.arange(len(self)) if rows is None else rows
        checksum.fix(self.buf, self.offsets, self.headers, which)

    def checksums_ok(self) -> npt.NDArray[np.bool_]:
        return checksum.verify(self.buf, self.offsets, self.headers)

    # -- selecting and joining ----------------------------------------------------

    def select(self, which: Selection) -> PacketBatch:
        """The packets ``which`` picks (a boolean mask or indices); the buffer is shared."""
        if which.dtype == np.bool_:  # one nonzero instead of one per column
            which = np.flatnonzero(which)
        return PacketBatch(
            self.buf,
            self.offsets[which],
            self.lengths[which],
            np.take(self.headers, which) if self.parsed else self.headers,
            {name: column[which] for name, column in self.meta.items()},
            self.dirty[which] if self.parsed else self.dirty,
            self.parsed,
        )

    @classmethod
    def concat(cls, batches: Iterable[PacketBatch]) -> PacketBatch:
        """One batch of all packets of ``batches``, in order; buffers are joined if they differ."""
        parts = [b for b in batches if len(b)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        buf, offsets = _join_buffers(parts)
        parsed = all(b.parsed for b in parts)
        return cls(
            buf,
            offsets,
            np.concatenate([b.lengths for b in parts]),
            np.concatenate([b.headers for b in parts]) if parsed else np.zeros(0, dtype=HEADER),
            _join_meta(parts),
            np.concatenate([b.dirty for b in parts]) if parsed else np.zeros(0, dtype=np.bool_),
            parsed,
        )


def _join_meta(parts: list[PacketBatch]) -> dict[str, npt.NDArray[np.generic]]:
    """Every column of any part; a part without a column contributes zeros to it."""
    columns: dict[str, npt.NDArray[np.generic]] = {}
    for b in parts:
        for name, column in b.meta.items():
            columns.setdefault(name, column)
    return {
        name: np.concatenate([b.meta.get(name, np.zeros(len(b), dtype=like.dtype)) for b in parts])
        for name, like in columns.items()
    }


def _join_buffers(parts: list[PacketBatch]) -> tuple[ByteArray, IntArray]:
    first = parts[0].buf
    if all(b.buf is first for b in parts):
        return first, np.concatenate([b.offsets for b in parts])
    bases, offsets, size = [], [], 0
    for b in parts:
        bases.append(b.buf)
        offsets.append(b.offsets + size)
        size += len(b.buf)
    return np.concatenate(bases), np.concatenate(offsets)


__all__ = ["PacketBatch", "ParseError"]
