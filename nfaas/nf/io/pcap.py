"""pcap files (the libpcap format tcpdump and Wireshark write), for offline tests and replay.

The reader takes microsecond and nanosecond files of either byte order with
Ethernet link type; each batch carries the capture time of its packets as
the ``ts`` metadata column. A file cut short in its last record (a capture
killed mid-write) ends there, counted in ``truncated``; a record announcing
more than the snap length is a ``CaptureError``, since nothing after it can
be trusted. The writer writes microsecond, native-order, Ethernet files.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import BinaryIO

import numpy as np

from nfaas.errors import CaptureError
from nfaas.nf.batch import PacketBatch
from nfaas.nf.io.base import PacketSink, PacketSource

LINKTYPE_ETHERNET = 1
MAGIC_US = 0xA1B2C3D4
MAGIC_NS = 0xA1B23C4D
SNAPLEN = 262_144
_GLOBAL = struct.Struct("=IHHiIII")
_RECORD_SIZE = 16


class PcapReader(PacketSource):
    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        try:
            self._file: BinaryIO = open(self.path, "rb")
        except OSError as exc:
            raise CaptureError(f"cannot open {self.path}: {exc.strerror}") from exc
        self.truncated = 0
        try:
            self._read_header()
        except BaseException:
            self._file.close()
            raise

    def _read_header(self) -> None:
        head = self._file.read(_GLOBAL.size)
        if len(head) < _GLOBAL.size:
            raise CaptureError(f"{self.path} is too short for a pcap file")
        magic = int.from_bytes(head[:4], "little")
        for order in ("<", ">"):
            magic = struct.unpack(order + "I", head[:4])[0]
            if magic in (MAGIC_US, MAGIC_NS):
                break
        else:
            raise CaptureError(f"{self.path} is not a pcap file (magic {head[:4].hex()})")
        self._order = order
        self._fraction = 1e-9 if magic == MAGIC_NS else 1e-6
        _, _, _, _, snaplen, linktype = struct.unpack(order + "HHiIII", head[4:])
        if linktype != LINKTYPE_ETHERNET:
            raise CaptureError(f"{self.path}: link type {linktype}, only Ethernet (1) is read")
        self._snaplen = max(snaplen, 1) if snaplen else SNAPLEN
        self._record = struct.Struct(order + "IIII")

    def read(self, max_packets: int = 256, timeout_s: float = 0.0) -> PacketBatch:
        self._check_open()
        frames: list[bytes] = []
        stamps: list[float] = []
        while len(frames) < max_packets:
            head = self._file.read(_RECORD_SIZE)
            if len(head) < _RECORD_SIZE:
                self.truncated += bool(head)
                break
            sec, frac, caplen, _ = self._record.unpack(head)
            if caplen > max(self._snaplen, SNAPLEN):
                raise CaptureError(f"{self.path}: a record of {caplen} bytes, over the snap length")
            data = self._file.read(caplen)
            if len(data) < caplen:
                self.truncated += 1
                break
            frames.append(data)
            stamps.append(sec + frac * self._fraction)
        batch = PacketBatch.from_frames(frames)
        batch.meta["ts"] = np.array(stamps, dtype=np.float64)
        self.packets += len(batch)
        return batch

    def _release(self) -> None:
        self._file.close()


class PcapWriter(PacketSink):
    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        try:
            self._file: BinaryIO = open(self.path, "wb")
        except OSError as exc:
            raise CaptureError(f"cannot write {self.path}: {exc.strerror}") from exc
        self._file.write(_GLOBAL.pack(MAGIC_US, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))

    def write(self, batch: PacketBatch) -> int:
        self._check_open()
        stamps = batch.meta.get("ts")
        now = time.time()
        records = []
        for i, frame in enumerate(batch.frames()):
            ts = float(stamps[i]) if stamps is not None else now
            sec = int(ts)
            records.append(struct.pack("=IIII", sec, int((ts - sec) * 1e6), len(frame), len(frame)))
            records.append(frame)
        self._file.write(b"".join(records))
        self.packets += len(batch)
        return len(batch)

    def _release(self) -> None:
        self._file.close()
