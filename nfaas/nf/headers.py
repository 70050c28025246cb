"""Header fields of a whole batch at once: parse into a NumPy structured array, deparse back.

``parse`` reads Ethernet (with one optional 802.1Q tag), IPv4 or IPv6 and UDP or
TCP headers of every frame of a batch with a few dozen vectorised gathers, so
its Python cost is per batch, not per packet. Each frame gets one row of
``HEADER``; a frame that is too short for what its headers announce gets an
error code instead (``ParseError``) and is dropped by the ``parse`` operator.

Addresses are ``src4``/``dst4`` (integers) for IPv4 and ``src6``/``dst6``
(16 bytes) for IPv6; the other pair is zero. The flow hash reads an IPv4
address as the IPv4-mapped ``::ffff:a.b.c.d``, so it treats both versions alike.

Offsets (``l3``, ``l4``, ``payload``) are relative to the frame's start. IPv6
extension headers are not walked: ``proto`` is then the first next-header and
the ports are zero. A non-first IPv4 fragment has no L4 header either.
"""

from __future__ import annotations

import enum

import numpy as np
import numpy.typing as npt

ETH_HLEN = 14
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_8021Q = 0x8100
IPPROTO_TCP = 6
IPPROTO_UDP = 17
#: bytes past a frame's start that parse may read; batches keep this much zero padding at the end
PARSE_REACH = 128

HEADER = np.dtype(
    [
        ("ethertype", "u2"),
        ("l3", "u2"),
        ("l4", "u2"),
        ("payload", "u2"),
        ("ip_version", "u1"),
        ("proto", "u1"),
        ("ttl", "u1"),
        ("tos", "u1"),
        ("ip_len", "u2"),
        ("src4", "u4"),
        ("dst4", "u4"),
        ("src6", "u1", (16,)),
        ("dst6", "u1", (16,)),
        ("sport", "u2"),
        ("dport", "u2"),
        ("tcp_flags", "u1"),
        ("seq", "u4"),
        ("ack", "u4"),
    ]
)

#: the fields a transform may change; deparse writes these back and fixes the checksums
WRITABLE = ("ttl", "tos", "src4", "dst4", "src6", "dst6", "sport", "dport")

IntArray = npt.NDArray[np.int64]
ByteArray = npt.NDArray[np.uint8]
HeaderArray = npt.NDArray[np.void]

_BYTES16 = np.arange(16, dtype=np.int64)


class ParseError(enum.IntEnum):
    """Why a frame was refused; the ``parse`` operator counts each as ``malformed_<name>``."""

    OK = 0
    TRUNCATED_ETHERNET = 1
    BAD_IP_HEADER = 2
    TRUNCATED_IP = 3
    TRUNCATED_L4 = 4


_R2 = np.arange(2, dtype=np.int64)
_R4 = np.arange(4, dtype=np.int64)


def be16(buf: ByteArray, at: IntArray) -> IntArray:
    """The big-endian 16-bit number at each offset: one gather of byte pairs, viewed."""
    pairs = buf[at[:, None] + _R2]
    numbers: IntArray = pairs.view(">u2")[:, 0].astype(np.int64)
    return numbers


def be32(buf: ByteArray, at: IntArray) -> IntArray:
    quads = buf[at[:, None] + _R4]
    numbers: IntArray = quads.view(">u4")[:, 0].astype(np.int64)
    return numbers


def put16(buf: ByteArray, at: IntArray, value: npt.ArrayLike) -> None:
    v = np.asarray(value, dtype=np.int64)
    buf[at] = v >> 8
    buf[at + 1] = v & 0xFF


def put32(buf: ByteArray, at: IntArray, value: npt.ArrayLike) -> None:
    v = np.asarray(value, dtype=np.int64)
    put16(buf, at, v >> 16)
    put16(buf, at + 2, v & 0xFFFF)


def parse(
    buf: ByteArray, offsets: IntArray, lengths: IntArray
) -> tuple[HeaderArray, npt.NDArray[np.uint8]]:
    """The header row of every frame, and an error code per frame (``ParseError``).

    Every column is computed for every row at once, as if each frame were IPv4,
    and corrected where it is IPv6 (only if the batch has some): whole-column
    operations cost a NumPy call each, whatever the mix of the batch.
    """
    n = len(offsets)
    h = np.zeros(n, dtype=HEADER)
    if n == 0:
        return h, np.zeros(0, dtype=np.uint8)
    # one gather of every frame's first bytes, through a strided view: no index array
    width = PLAIN_IPV4.itemsize
    window = np.ndarray((len(buf) - width + 1, width), np.uint8, buf, 0, (1, 1))[offsets]
    plain = window.view(PLAIN_IPV4)[:, 0]
    if _fast_path_fits(plain, lengths):
        return h, _parse_plain_ipv4(plain, lengths, h)
    ethertype = be16(buf, offsets + 12)
    l3 = np.full(n, ETH_HLEN, dtype=np.int64)
    tagged = ethertype == ETH_P_8021Q
    if tagged.any():
        l3[tagged] = ETH_HLEN + 4
        ethertype = np.where(tagged, be16(buf, offsets + 16), ethertype)
    error = np.where(lengths < l3, ParseError.TRUNCATED_ETHERNET, ParseError.OK).astype(np.uint8)
    h["ethertype"], h["l3"] = ethertype, l3
    ip = _parse_ip(buf, offsets, lengths, h, error, l3, ethertype)
    _parse_l4(buf, offsets, h, error, ip)
    return h, error


#: an untagged Ethernet frame with a 20-byte IPv4 header and a TCP (or UDP) header, as laid
#: out on the wire: viewing a window of frame starts through it reads every field at once
PLAIN_IPV4 = np.dtype(
    [
        ("macs", "V12"), ("ethertype", ">u2"), ("vihl", "u1"), ("tos", "u1"), ("ip_len", ">u2"),
        ("ident", ">u2"), ("fragment", ">u2"), ("ttl", "u1"), ("proto", "u1"), ("ip_sum", ">u2"),
        ("src", ">u4"), ("dst", ">u4"), ("sport", ">u2"), ("dport", ">u2"), ("seq", ">u4"),
        ("ack", ">u4"), ("offset", "u1"), ("flags", "u1"),
    ]
)  # fmt: skip


def _fast_path_fits(w: npt.NDArray[np.void], lengths: IntArray) -> bool:
    """Whether every frame is untagged IPv4 without options or fragmentation, long enough.

    The common case: its fields sit at fixed places, so the parse is a view and
    a few column operations, with no gather per field.
    """
    return bool(
        lengths.min() >= PLAIN_IPV4.itemsize
        and (w["ethertype"] == ETH_P_IP).all()
        and (w["vihl"] == 0x45).all()
        and not (w["fragment"] & 0x3FFF).any()
    )


def _parse_plain_ipv4(
    w: npt.NDArray[np.void], lengths: IntArray, h: HeaderArray
) -> npt.NDArray[np.uint8]:
    ip_len = w["ip_len"].astype(np.int64)
    proto = w["proto"]
    is_udp, is_tcp = proto == IPPROTO_UDP, proto == IPPROTO_TCP
    room = ip_len - 20
    hlen = (w["offset"] >> 4).astype(np.int64) * 4
    udp = is_udp & (room >= 8)
    tcp = is_tcp & (room >= 20) & (hlen >= 20) & (hlen <= room)
    ported = udp | tcp
    short_l4 = (is_udp | is_tcp) & ~ported
    short_ip = lengths < ETH_HLEN + ip_len
    error = np.zeros(len(h), dtype=np.uint8)
    if (short_l4 | short_ip).any() or (ip_len < 20).any():
        error[short_l4] = ParseError.TRUNCATED_L4
        error[short_ip] = ParseError.TRUNCATED_IP
        error[ip_len < 20] = ParseError.BAD_IP_HEADER
    h["ethertype"], h["l3"], h["l4"], h["ip_version"] = ETH_P_IP, ETH_HLEN, ETH_HLEN + 20, 4
    h["ip_len"], h["tos"], h["ttl"], h["proto"] = ip_len, w["tos"], w["ttl"], proto
    h["src4"], h["dst4"] = w["src"], w["dst"]
    if ported.all():
        h["sport"], h["dport"] = w["sport"], w["dport"]
    else:
        h["sport"], h["dport"] = np.where(ported, w["sport"], 0), np.where(ported, w["dport"], 0)
    h["payload"] = ETH_HLEN + 20 + np.where(udp, 8, hlen * tcp)
    if tcp.any():
        h["seq"], h["ack"], h["tcp_flags"] = w["seq"], w["ack"], w["flags"]
        if not tcp.all():
            rest = np.flatnonzero(~tcp)
            for field in ("seq", "ack", "tcp_flags"):
                h[field][rest] = 0
    return error


def _parse_ip(
    buf: ByteArray, offsets: IntArray, lengths: IntArray, h: HeaderArray,
    error: npt.NDArray[np.uint8], l3: IntArray, ethertype: IntArray,
) -> npt.NDArray[np.bool_]:  # fmt: skip
    """IPv4 and IPv6 columns; returns which rows are IP packets without error."""
    start = offsets + l3
    first = buf[start].astype(np.int64)
    is4 = (ethertype == ETH_P_IP) & (error == 0)
    is6 = (ethertype == ETH_P_IPV6) & (error == 0)
    ihl = (first & 0x0F) * 4
    ip_len = be16(buf, start + 2)
    version, l4 = np.where(is4, 4, 0), l3 + ihl
    min_len: IntArray | int = 20
    bad = is4 & (((first >> 4) != 4) | (ihl < 20) | (ip_len < ihl))
    # a non-first fragment carries no L4 header: its l4 is the end of the IP packet
    fragment = is4 & ((be16(buf, start + 6) & 0x1FFF) != 0)
    words = buf[(start + 8)[:, None] + _R2]  # TTL and protocol of IPv4
    ttl, proto, tos = words[:, 0], words[:, 1], buf[start + 1]
    h["src4"] = be32(buf, start + 12)
    h["dst4"] = be32(buf, start + 16)
    if is6.any():
        bad |= is6 & ((first >> 4) != 6)
        ip_len = np.where(is6, 40 + be16(buf, start + 4), ip_len)
        l4 = np.where(is6, l3 + 40, l4)
        version = np.where(is6, 6, version)
        min_len = np.where(is6, 40, 20)
        ttl, proto = np.where(is6, buf[start + 7], ttl), np.where(is6, buf[start + 6], proto)
        tos = np.where(is6, (be16(buf, start) >> 4) & 0xFF, tos)
        rows = np.flatnonzero(is6)
        h["src6"][rows] = buf[(start[rows] + 8)[:, None] + _BYTES16]
        h["dst6"][rows] = buf[(start[rows] + 24)[:, None] + _BYTES16]
        h["src4"][rows] = h["dst4"][rows] = 0
    ip = is4 | is6
    truncated = ip & ~bad & ((lengths < l3 + min_len) | (lengths < l3 + ip_len))
    error[bad] = ParseError.BAD_IP_HEADER
    error[truncated] = ParseError.TRUNCATED_IP
    h["ip_version"], h["ip_len"], h["ttl"], h["proto"], h["tos"] = version, ip_len, ttl, proto, tos
    h["l4"] = np.where(fragment, l3 + ip_len, l4)
    if not ip.all():  # ARP and other non-IP frames: no IP fields
        other = np.flatnonzero(~ip)
        for field in ("ip_version", "ip_len", "ttl", "proto", "tos", "src4", "dst4"):
            h[field][other] = 0
        h["l4"][other] = l3[other]
    ok: npt.NDArray[np.bool_] = ip & (error == 0)
    return ok


def _parse_l4(
    buf: ByteArray, offsets: IntArray, h: HeaderArray, error: npt.NDArray[np.uint8],
    ip: npt.NDArray[np.bool_],
) -> None:  # fmt: skip
    l3 = h["l3"].astype(np.int64)
    l4 = h["l4"].astype(np.int64)
    room = l3 + h["ip_len"] - l4
    proto = h["proto"]
    udp = ip & (proto == IPPROTO_UDP) & (room > 0)
    tcp = ip & (proto == IPPROTO_TCP) & (room > 0)
    # read no further than a 60-byte IPv4 header allows: a fragment's l4 may be far away
    at = offsets + np.minimum(l4, l3 + 60)
    head = buf[at[:, None] + np.arange(14, dtype=np.int64)]
    tcp_hlen = (head[:, 12].astype(np.int64) >> 4) * 4
    short = (udp & (room < 8)) | (tcp & ((room < 20) | (tcp_hlen < 20) | (tcp_hlen > room)))
    error[short] = ParseError.TRUNCATED_L4
    udp &= ~short
    tcp &= ~short
    ported = udp | tcp
    ports = np.ascontiguousarray(head[:, :4]).view(">u2")
    h["sport"] = np.where(ported, ports[:, 0], 0)
    h["dport"] = np.where(ported, ports[:, 1], 0)
    h["payload"] = l4 + np.where(udp, 8, np.where(tcp, tcp_hlen, 0))
    if tcp.any():
        numbers = np.ascontiguousarray(head[:, 4:12]).view(">u4")
        h["seq"] = np.where(tcp, numbers[:, 0], 0)
        h["ack"] = np.where(tcp, numbers[:, 1], 0)
        h["tcp_flags"] = np.where(tcp, head[:, 13], 0)


def deparse(buf: ByteArray, offsets: IntArray, h: HeaderArray, rows: IntArray) -> None:
    """Write the ``WRITABLE`` fields of ``rows`` back into their frames (checksums apart)."""
    if len(rows) == 0:
        return
    hr = np.take(h, rows)
    start = offsets[rows] + hr["l3"]
    v4 = hr["ip_version"] == 4
    v6 = hr["ip_version"] == 6
    s4 = start[v4]
    buf[s4 + 1] = hr["tos"][v4]
    buf[s4 + 8] = hr["ttl"][v4]
    put32(buf, s4 + 12, hr["src4"][v4])
    put32(buf, s4 + 16, hr["dst4"][v4])
    s6 = start[v6]
    first = be16(buf, s6)
    put16(buf, s6, (first & 0xF00F) | (hr["tos"][v6].astype(np.int64) << 4))
    buf[s6 + 7] = hr["ttl"][v6]
    buf[(s6 + 8)[:, None] + _BYTES16] = hr["src6"][v6]
    buf[(s6 + 24)[:, None] + _BYTES16] = hr["dst6"][v6]
    ported = (hr["proto"] == IPPROTO_UDP) | (hr["proto"] == IPPROTO_TCP)
    ported &= hr["payload"] > hr["l4"]
    l4 = offsets[rows][ported] + hr["l4"][ported]
    put16(buf, l4, hr["sport"][ported])
    put16(buf, l4 + 2, hr["dport"][ported])
