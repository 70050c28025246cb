"""The floors of ``benchmarks/nf.py``: traffic, and the two NFs written per packet in plain Python.

``PerPacketFirewall`` and ``PerPacketLb`` do what the example graphs do
(same rules, same Maglev table and flow hash, destination rewrite with both
checksums recomputed) one frame at a time with ``struct`` and dicts: the
program a Python author writes without the framework.
"""

from __future__ import annotations

import ipaddress
import random
import struct
from typing import Any

from nfaas.nf.acl import Acl, Rule
from nfaas.nf.flowhash import flow_hash
from nfaas.nf.maglev import MaglevTable

#: ten rules, most traffic decided after several of them
FIREWALL_RULES: list[dict[str, Any]] = [
    {"action": "deny", "src": "10.66.0.0/16"},
    {"action": "deny", "src": "192.0.2.0/24"},
    {"action": "deny", "proto": "tcp", "dport": 23},
    {"action": "deny", "proto": "udp", "dport": "137-139"},
    {"action": "allow", "proto": "udp", "dport": 53},
    {"action": "allow", "proto": "udp", "dport": 123},
    {"action": "allow", "proto": "tcp", "dst": "10.0.0.0/24", "dport": "80-443"},
    {"action": "deny", "proto": "tcp", "sport": "0-1023"},
    {"action": "allow", "proto": "tcp", "dport": 22, "src": "172.16.0.0/12"},
    {"action": "allow", "src": "172.16.0.0/12"},
]


def _checksum(data: bytes | bytearray) -> int:
    if len(data) % 2:
        data = bytes(data) + b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _frame(src: str, dst: str, sport: int, dport: int, proto: int, payload: bytes) -> bytes:
    s, d = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    if proto == 6:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x18, 65535, 0, 0) + payload
        at = 16
    else:
        l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
        at = 6
    c = _checksum(s + d + struct.pack("!xBH", proto, len(l4)) + l4) or 0xFFFF
    l4 = l4[:at] + struct.pack("!H", c) + l4[at + 2 :]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0x4000, 64, proto, 0, s, d)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return bytes(6) + bytes(5) + b"\x01" + b"\x08\x00" + ip + l4


def make_traffic(count: int, flows: int, seed: int = 7) -> list[bytes]:
    """``count`` frames of ``flows`` flows: to the VIP mostly, some the ACL denies, 60-300 bytes."""
    rng = random.Random(seed)
    templates = []
    for _f in range(flows):
        src = rng.choice(["172.16.%d.%d", "10.66.%d.%d", "198.51.%d.%d"]) % (
            rng.randrange(256),
            rng.randrange(1, 255),
        )
        proto = rng.choice([6, 6, 17])
        dport = 80 if rng.random() < 0.8 else rng.choice([22, 23, 53, 123, 138, 8080])
        templates.append((src, "10.0.0.100", rng.randrange(1024, 65535), dport, proto))
    return [_frame(*rng.choice(templates), bytes(rng.randrange(10, 250))) for _ in range(count)]


class PerPacketFirewall:
    def __init__(self, rules: list[dict[str, Any]]) -> None:
        self.rules = [self._compile(r) for r in Acl(rules).rules]

    @staticmethod
    def _compile(r: Rule) -> tuple[Any, ...]:
        def prefix(p: Any) -> tuple[int, int] | None:
            return p.words[0] if p is not None else None

        return (r.action == "allow", r.proto, prefix(r.src), prefix(r.dst), r.sport, r.dport)

    def __call__(self, data: bytes) -> bytes | None:
        if len(data) < 34 or data[12:14] != b"\x08\x00":
            return None
        ihl = (data[14] & 0x0F) * 4
        proto = data[23]
        src, dst = struct.unpack_from("!II", data, 26)
        sport, dport = struct.unpack_from("!HH", data, 14 + ihl) if proto in (6, 17) else (0, 0)
        for allow, r_proto, r_src, r_dst, r_sport, r_dport in self.rules:
            if r_proto is not None and proto != r_proto:
                continue
            if r_src is not None and src & r_src[1] != r_src[0]:
                continue
            if r_dst is not None and dst & r_dst[1] != r_dst[0]:
                continue
            if r_sport is not None and not r_sport[0] <= sport <= r_sport[1]:
                continue
            if r_dport is not None and not r_dport[0] <= dport <= r_dport[1]:
                continue
            return data if allow else None
        return None


class PerPacketLb:
    def __init__(self, vip: str, backends: list[str]) -> None:
        host, _, port = vip.rpartition(":")
        self.vip = (ipaddress.IPv4Address(host).packed, int(port))
        self.maglev = MaglevTable(backends).table.tolist()
        self.backends = [(ipaddress.IPv4Address(b.rpartition(":")[0]).packed, int(b.rpartition(":")[2]))
                         for b in backends]  # fmt: skip
        self.conns: dict[int, int] = {}
        self.packets = [0] * len(backends)

    def __call__(self, data: bytes) -> bytes | None:
        if len(data) < 34 or data[12:14] != b"\x08\x00":
            return None
        ihl = (data[14] & 0x0F) * 4
        proto, l4 = data[23], 14 + ihl
        if proto not in (6, 17) or data[30:34] != self.vip[0]:
            return None
        sport, dport = struct.unpack_from("!HH", data, l4)
        if dport != self.vip[1]:
            return None
        key = flow_hash(data[26:30], data[30:34], sport, dport, proto)
        backend = self.conns.get(key)
        if backend is None:
            backend = self.conns[key] = self.maglev[key % len(self.maglev)]
        self.packets[backend] += 1
        address, port = self.backends[backend]
        out = bytearray(data)
        out[30:34] = address
        struct.pack_into("!H", out, l4 + 2, port)
        total = struct.unpack_from("!H", out, 16)[0]
        out[24:26] = b"\0\0"
        struct.pack_into("!H", out, 24, _checksum(out[14:l4]))
        at = l4 + (16 if proto == 6 else 6)
        out[at : at + 2] = b"\0\0"
        segment = out[l4 : 14 + total]
        c = _checksum(bytes(out[26:34]) + struct.pack("!xBH", proto, len(segment)) + segment)
        struct.pack_into("!H", out, at, c or 0xFFFF)
        return bytes(out)
