"""Parsing whole batches into header columns, and refusing what is malformed."""

from __future__ import annotations

import ipaddress
import struct

import numpy as np
import pytest

from nfaas.nf import PacketBatch, ParseError
from tests.nf.kit import ICMP, TCP, UDP, frame


def parsed(frames: list[bytes]) -> tuple[PacketBatch, list[int]]:
    batch = PacketBatch.from_frames(frames)
    errors = batch.parse()
    return batch, errors.tolist()


def test_ipv4_udp_and_tcp_fields() -> None:
    batch, errors = parsed([
        frame("192.0.2.1", "198.51.100.7", 5353, 53, UDP, b"q" * 11, ttl=17),
        frame("10.1.2.3", "10.3.2.1", 40000, 443, TCP, b"GET", seq=123456789, flags=0x12),
    ])  # fmt: skip
    assert errors == [0, 0]
    h = batch.headers
    assert h["ip_version"].tolist() == [4, 4]
    assert h["proto"].tolist() == [UDP, TCP]
    assert [str(ipaddress.IPv4Address(int(a))) for a in h["src4"]] == ["192.0.2.1", "10.1.2.3"]
    assert [str(ipaddress.IPv4Address(int(a))) for a in h["dst4"]] == ["198.51.100.7", "10.3.2.1"]
    assert (h["sport"].tolist(), h["dport"].tolist()) == ([5353, 40000], [53, 443])
    assert h["ttl"][0] == 17
    assert (int(h["seq"][1]), int(h["tcp_flags"][1])) == (123456789, 0x12)
    assert batch.payload(0) == b"q" * 11 and batch.payload(1) == b"GET"
    assert bytes(h["src6"][0]) == bytes(16)  # IPv6 columns are for IPv6 only


def test_ipv6_and_vlan() -> None:
    batch, errors = parsed([
        frame("2001:db8::1", "2001:db8::2", 1000, 2000, UDP, b"six"),
        frame("10.0.0.1", "10.0.0.2", 1, 2, TCP, b"tagged", vlan=42),
    ])  # fmt: skip
    assert errors == [0, 0]
    h = batch.headers
    assert h["ip_version"].tolist() == [6, 4]
    assert bytes(h["dst6"][0]) == ipaddress.IPv6Address("2001:db8::2").packed
    assert (h["src4"][0], h["dst4"][0]) == (0, 0)
    assert h["l3"].tolist() == [14, 18]
    assert (h["sport"].tolist(), h["dport"].tolist()) == ([1000, 1], [2000, 2])
    assert batch.payload(0) == b"six" and batch.payload(1) == b"tagged"


def test_other_protocols_parse_without_ports() -> None:
    arp = bytes(12) + b"\x08\x06" + bytes(28)
    batch, errors = parsed([frame(proto=ICMP, payload=b"\x08\x00ping"), arp])
    assert errors == [0, 0]
    assert batch.headers["proto"][0] == ICMP and batch.headers["dport"][0] == 0
    assert batch.headers["ip_version"][1] == 0 and batch.headers["ethertype"][1] == 0x0806


def _fragment() -> bytes:
    data = bytearray(frame(payload=b"x" * 40))
    struct.pack_into("!H", data, 14 + 6, 0x0003)  # fragment offset 3 (x 8 bytes)
    return bytes(data)


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: b"\x01\x02\x03", ParseError.TRUNCATED_ETHERNET),
        (lambda: frame()[:20], ParseError.TRUNCATED_IP),
        (lambda: frame(payload=b"x" * 30)[:-5], ParseError.TRUNCATED_IP),
        (
            lambda: frame()[:14] + b"\x65" + frame()[15:],
            ParseError.BAD_IP_HEADER,
        ),  # version 6 in v4
        (lambda: frame()[:14] + b"\x43" + frame()[15:], ParseError.BAD_IP_HEADER),  # IHL 3
        (lambda: frame("2001:db8::1", "2001:db8::2")[:50], ParseError.TRUNCATED_IP),
        (lambda: frame(proto=TCP, payload=b"")[:-20] + bytes(0), ParseError.TRUNCATED_IP),
    ],
)
def test_malformed_frames_get_an_error(make: object, error: ParseError) -> None:
    good = frame(payload=b"fine")
    _, errors = parsed([good, make(), good])  # type: ignore[operator]
    assert errors == [0, int(error), 0]


def test_l4_header_shorter_than_announced() -> None:
    data = bytearray(frame(proto=TCP, payload=b""))
    data[14 + 20 + 12] = 15 << 4  # a 60-byte TCP header in a 20-byte segment
    _, errors = parsed([bytes(data)])
    assert errors == [int(ParseError.TRUNCATED_L4)]


def test_non_first_fragment_has_no_ports() -> None:
    batch, errors = parsed([_fragment()])
    assert errors == [0]
    assert batch.headers["proto"][0] == UDP
    assert (batch.headers["sport"][0], batch.headers["dport"][0]) == (0, 0)


def test_random_bytes_never_break_the_batch() -> None:
    rng = np.random.default_rng(5)
    junk = [
        rng.integers(0, 256, size=int(n), dtype=np.uint8).tobytes()
        for n in rng.integers(0, 120, 300)
    ]
    good = frame(payload=b"ok")
    batch, errors = parsed([*junk, good])
    assert errors[-1] == 0 and batch.payload(len(junk)) == b"ok"
