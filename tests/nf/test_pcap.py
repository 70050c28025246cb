"""pcap files: what the writer writes the reader reads; damaged files are refused or cut."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from nfaas.errors import CaptureError
from nfaas.nf import PacketBatch
from nfaas.nf.io.pcap import PcapReader, PcapWriter
from tests.nf.kit import frame

FRAMES = [frame(dport=i, payload=b"x" * i) for i in range(10)]


def write(path: Path, frames: list[bytes], stamps: list[float] | None = None) -> None:
    batch = PacketBatch.from_frames(frames)
    if stamps is not None:
        batch.meta["ts"] = np.array(stamps)
    with PcapWriter(path) as writer:
        assert writer.write(batch) == len(frames)


def test_round_trip_in_batches(tmp_path: Path) -> None:
    path = tmp_path / "t.pcap"
    write(path, FRAMES, [1.5 + i for i in range(10)])
    with PcapReader(path) as reader:
        sizes = []
        frames: list[bytes] = []
        while len(batch := reader.read(4)):
            sizes.append(len(batch))
            frames += batch.frames()
            assert batch.meta["ts"][0] == pytest.approx(1.5 + len(frames) - len(batch))
    assert sizes == [4, 4, 2] and frames == FRAMES
    with pytest.raises(CaptureError, match="closed"):
        reader.read()
    reader.close()  # idempotent


def _header(magic: int, order: str) -> bytes:
    return struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1)


@pytest.mark.parametrize(
    ("magic", "order", "scale"), [(0xA1B2C3D4, ">", 1e-6), (0xA1B23C4D, "<", 1e-9)]
)
def test_byte_orders_and_nanoseconds(tmp_path: Path, magic: int, order: str, scale: float) -> None:
    data = frame(payload=b"be")
    path = tmp_path / "t.pcap"
    path.write_bytes(
        _header(magic, order) + struct.pack(order + "IIII", 7, 250, len(data), len(data)) + data
    )
    with PcapReader(path) as reader:
        batch = reader.read()
    assert batch.frames() == [data]
    assert batch.meta["ts"][0] == pytest.approx(7 + 250 * scale)


def test_a_file_cut_mid_record_ends_there(tmp_path: Path) -> None:
    path = tmp_path / "t.pcap"
    write(path, FRAMES[:3])
    path.write_bytes(path.read_bytes()[:-4])
    with PcapReader(path) as reader:
        assert len(reader.read()) == 2
        assert reader.truncated == 1


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "too short"),
        (b"\x00" * 24, "not a pcap file"),
        (struct.pack("=IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101), "link type 101"),
        (
            struct.pack("=IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
            + struct.pack("=IIII", 0, 0, 1 << 30, 1 << 30),
            "over the snap length",
        ),
    ],
)
def test_bad_files_are_refused(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "t.pcap"
    path.write_bytes(content)
    with pytest.raises(CaptureError, match=words):
        with PcapReader(path) as reader:
            reader.read()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="cannot open"):
        PcapReader(tmp_path / "absent.pcap")
