"""Checksums after a transform, against checksums computed from scratch the slow way."""

from __future__ import annotations

import numpy as np

from nfaas.nf import PacketBatch
from tests.nf.kit import TCP, UDP, checksums_right, fields, frame


def mixed_frames() -> list[bytes]:
    out = []
    for i in range(40):
        v6 = i % 3 == 0
        src, dst = ("2001:db8::%x" % (i + 1), "2001:db8::ff") if v6 else (f"10.0.{i}.1", "10.9.9.9")
        out.append(frame(src, dst, 1000 + i, 80, TCP if i % 2 else UDP, b"p" * (i * 7 % 53),
                         vlan=5 if i % 5 == 0 else None))  # fmt: skip
    return out


def test_frames_of_the_kit_verify() -> None:
    batch = PacketBatch.from_frames(mixed_frames())
    batch.parse()
    assert batch.checksums_ok().all()
    assert all(checksums_right(f) for f in mixed_frames())


def test_rewritten_headers_get_right_checksums() -> None:
    batch = PacketBatch.from_frames(mixed_frames())
    batch.parse()
    h = batch.headers
    h["dport"] = 8080
    h["ttl"] -= 1
    v4 = h["ip_version"] == 4
    h["dst4"][v4] = 0xC0000263  # 192.0.2.99
    h["src6"][~v4, 15] = 0x42
    batch.dirty[:] = True
    assert batch.deparse() == len(batch)
    for before, after in zip(mixed_frames(), batch.frames(), strict=True):
        assert checksums_right(after)
        f = fields(after)
        assert f["dport"] == 8080 and f["ttl"] == fields(before)["ttl"] - 1  # type: ignore[operator]
        assert f["dst"] == "192.0.2.99" or ":" in str(f["dst"])
    again = PacketBatch.from_frames(batch.frames())
    again.parse()
    assert again.checksums_ok().all()


def test_only_changed_packets_are_rewritten() -> None:
    frames = mixed_frames()
    batch = PacketBatch.from_frames(frames)
    batch.parse()
    batch.headers["dport"][3] = 9
    batch.dirty[3] = True
    assert batch.deparse() == 1
    out = batch.frames()
    assert [i for i, (a, b) in enumerate(zip(frames, out, strict=True)) if a != b] == [3]


def test_a_corrupted_byte_fails_verification() -> None:
    frames = mixed_frames()[:6]
    broken = bytearray(frames[1])
    broken[-1] ^= 0xFF
    frames[1] = bytes(broken)
    batch = PacketBatch.from_frames(frames)
    batch.parse()
    assert batch.checksums_ok().tolist() == [True, False, True, True, True, True]
    assert not checksums_right(frames[1])


def test_udp_over_ipv4_without_checksum_passes() -> None:
    data = bytearray(frame(payload=b"nochecksum"))
    data[14 + 20 + 6 : 14 + 20 + 8] = b"\0\0"
    batch = PacketBatch.from_frames([bytes(data)])
    batch.parse()
    assert batch.checksums_ok().tolist() == [True]
    assert np.array_equal(batch.headers["dport"], [80])


def test_rewriting_keeps_a_missing_udp_checksum_missing_and_a_wrong_one_wrong() -> None:
    """Updated incrementally (RFC 1624), a checksum does not hide a corrupted payload."""
    none = bytearray(frame(payload=b"nochecksum"))
    none[14 + 20 + 6 : 14 + 20 + 8] = b"\0\0"
    corrupt = bytearray(frame(payload=b"corrupt!"))
    corrupt[-1] ^= 0x55
    batch = PacketBatch.from_frames([bytes(none), bytes(corrupt), frame(payload=b"fine")])
    batch.parse()
    batch.headers["dport"] = 4242
    batch.dirty[:] = True
    batch.deparse()
    out = batch.frames()
    assert out[0][14 + 20 + 6 : 14 + 20 + 8] == b"\0\0"
    assert not checksums_right(out[1]) and checksums_right(out[2])
    assert [fields(f)["dport"] for f in out] == [4242] * 3


def test_a_full_fix_computes_checksums_from_scratch() -> None:
    zeroed = bytearray(frame(proto=TCP, payload=b"partial"))
    zeroed[14 + 10 : 14 + 12] = b"\0\0"
    zeroed[14 + 20 + 16 : 14 + 20 + 18] = b"\0\0"
    batch = PacketBatch.from_frames([bytes(zeroed)])
    batch.parse()
    batch.fix_checksums()
    assert checksums_right(batch.frames()[0])
