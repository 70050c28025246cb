"""Frames for the tests, built byte by byte with struct and checked with a plain checksum.

Independent of ``nfaas.nf``: the checksums here are RFC 1071 written out the
slow, obvious way, so a test that compares them with the framework's
vectorised ones compares two implementations.
"""

from __future__ import annotations

import ipaddress
import struct

ETH_SRC = bytes.fromhex("02000000000a")
ETH_DST = bytes.fromhex("02000000000b")
UDP, TCP, ICMP = 17, 6, 1


def internet_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _l4(proto: int, src: bytes, dst: bytes, sport: int, dport: int, payload: bytes,
        seq: int, flags: int, pseudo_v6: bool) -> bytes:  # fmt: skip
    if proto == UDP:
        segment = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
        at = 6
    elif proto == TCP:
        segment = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0)
        segment += payload
        at = 16
    else:
        return payload
    if pseudo_v6:
        pseudo = src + dst + struct.pack("!IxxxB", len(segment), proto)
    else:
        pseudo = src + dst + struct.pack("!xBH", proto, len(segment))
    checksum = internet_checksum(pseudo + segment)
    if proto == UDP and checksum == 0:
        checksum = 0xFFFF
    return segment[:at] + struct.pack("!H", checksum) + segment[at + 2 :]


def frame(src: str = "10.0.0.1", dst: str = "10.0.0.2", sport: int = 1234, dport: int = 80,
          proto: int = UDP, payload: bytes = b"hello", *, seq: int = 0, flags: int = 0x18,
          ttl: int = 64, vlan: int | None = None) -> bytes:  # fmt: skip
    """An Ethernet frame with right checksums (IPv4 or IPv6 by the addresses given)."""
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    l4 = _l4(proto, s.packed, d.packed, sport, dport, payload, seq, flags, s.version == 6)
    if s.version == 4:
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 7, 0, ttl, proto, 0, s.packed, d.packed
        )
        ip = ip[:10] + struct.pack("!H", internet_checksum(ip)) + ip[12:]
        ethertype = 0x0800
    else:
        ip = struct.pack("!IHBB", 6 << 28, len(l4), proto, ttl) + s.packed + d.packed
        ethertype = 0x86DD
    tag = struct.pack("!HH", 0x8100, vlan) if vlan is not None else b""
    return ETH_DST + ETH_SRC + tag + struct.pack("!H", ethertype) + ip + l4


def checksums_right(data: bytes) -> bool:
    """Whether a frame's IPv4 and UDP/TCP checksums are right, recomputed from scratch."""
    at = 14
    ethertype = struct.unpack_from("!H", data, 12)[0]
    if ethertype == 0x8100:
        at, ethertype = 18, struct.unpack_from("!H", data, 16)[0]
    if ethertype == 0x0800:
        ihl = (data[at] & 0x0F) * 4
        total = struct.unpack_from("!H", data, at + 2)[0]
        if internet_checksum(data[at : at + ihl]) != 0:
            return False
        proto, src, dst = data[at + 9], data[at + 12 : at + 16], data[at + 16 : at + 20]
        segment = data[at + ihl : at + total]
        pseudo = src + dst + struct.pack("!xBH", proto, len(segment))
    else:
        length = struct.unpack_from("!H", data, at + 4)[0]
        proto, src, dst = data[at + 6], data[at + 8 : at + 24], data[at + 24 : at + 40]
        segment = data[at + 40 : at + 40 + length]
        pseudo = src + dst + struct.pack("!IxxxB", len(segment), proto)
    if proto not in (UDP, TCP):
        return True
    return internet_checksum(pseudo + segment) == 0


def fields(data: bytes) -> dict[str, object]:
    """Addresses and ports of a frame, read the slow way."""
    at = 14
    ethertype = struct.unpack_from("!H", data, 12)[0]
    if ethertype == 0x8100:
        at, ethertype = 18, struct.unpack_from("!H", data, 16)[0]
    if ethertype == 0x0800:
        ihl = (data[at] & 0x0F) * 4
        src = str(ipaddress.ip_address(data[at + 12 : at + 16]))
        dst = str(ipaddress.ip_address(data[at + 16 : at + 20]))
        ttl, proto, l4 = data[at + 8], data[at + 9], at + ihl
    else:
        src = str(ipaddress.ip_address(data[at + 8 : at + 24]))
        dst = str(ipaddress.ip_address(data[at + 24 : at + 40]))
        ttl, proto, l4 = data[at + 7], data[at + 6], at + 40
    sport, dport = struct.unpack_from("!HH", data, l4)
    return {"src": src, "dst": dst, "sport": sport, "dport": dport, "proto": proto, "ttl": ttl}
