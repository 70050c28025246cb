"""The flow hash: one 64-bit number per 5-tuple, the same on the NF and on the trigger side.

Flow affinity (the same flow always reaches the same instance) needs the
dispatching side and the NF to agree on a flow's hash. ``flow_hashes`` hashes
the header rows of a whole batch with NumPy; ``flow_hash`` hashes one 5-tuple
in plain Python (what a trigger would call per datagram) and gives the same
number. Both take IPv4 and IPv6 alike (IPv4 as ``::ffff:a.b.c.d``).

``symmetric=True`` gives both directions of a connection one hash (the
endpoints are ordered first), for NFs that must see a whole conversation.

The mixing is splitmix64's finaliser over the address words and the ports and
protocol word: fast, and good enough to spread flows (it is not keyed, so not
a defence against an adversary choosing flows to collide).

``shard_of`` maps hashes to one of ``n`` instances with jump consistent
hashing (Lamping and Veach, 2014): when ``n`` grows by one, only ~1/(n+1) of
the flows move, all to the new instance.
"""

from __future__ import annotations

import ipaddress

import numpy as np
import numpy.typing as npt

from nfaas.nf.headers import HeaderArray

MASK64 = (1 << 64) - 1
_SEED = 0x9E3779B97F4A7C15
_M1, _M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB

U64Array = npt.NDArray[np.uint64]


def _mix(x: U64Array) -> U64Array:
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(_M1)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(_M2)
    return x ^ (x >> np.uint64(31))


_V4_MAPPED = np.uint64(0xFFFF << 32)


def _words(headers: HeaderArray, field: str) -> tuple[U64Array, U64Array]:
    """The two 64-bit halves of each row's address as IPv6 (IPv4 as ``::ffff:a.b.c.d``)."""
    v4 = headers[field + "4"].astype(np.uint64) | _V4_MAPPED
    v6 = headers["ip_version"] == 6
    if not v6.any():
        return np.zeros(len(headers), dtype=np.uint64), v4
    both = np.ascontiguousarray(headers[field + "6"]).view(">u8").reshape(-1, 2).astype(np.uint64)
    return np.where(v6, both[:, 0], np.uint64(0)), np.where(v6, both[:, 1], v4)


def flow_hashes(headers: HeaderArray, *, symmetric: bool = False) -> U64Array:
    """The flow hash of every header row."""
    a_hi, a_lo = _words(headers, "src")
    b_hi, b_lo = _words(headers, "dst")
    a_port = headers["sport"].astype(np.uint64)
    b_port = headers["dport"].astype(np.uint64)
    if symmetric:
        swap = (b_hi < a_hi) | (
            (b_hi == a_hi) & ((b_lo < a_lo) | ((b_lo == a_lo) & (b_port < a_port)))
        )
        a_hi, b_hi = np.where(swap, b_hi, a_hi), np.where(swap, a_hi, b_hi)
        a_lo, b_lo = np.where(swap, b_lo, a_lo), np.where(swap, a_lo, b_lo)
        a_port, b_port = np.where(swap, b_port, a_port), np.where(swap, a_port, b_port)
    ports = (
        (a_port << np.uint64(24)) | (b_port << np.uint64(8)) | headers["proto"].astype(np.uint64)
    )
    h = np.full(len(headers), _SEED, dtype=np.uint64)
    for word in (a_hi, a_lo, b_hi, b_lo, ports):
        h = _mix(h ^ word)
    return h


def _mix_int(x: int) -> int:
    x ^= x >> 30
    x = (x * _M1) & MASK64
    x ^= x >> 27
    x = (x * _M2) & MASK64
    return x ^ (x >> 31)


def _address_int(address: str | bytes) -> int:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv4Address):
        ip = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + ip.packed)
    return int(ip)


def flow_hash(
    src: str | bytes,
    dst: str | bytes,
    sport: int,
    dport: int,
    proto: int,
    *,
    symmetric: bool = False,
) -> int:
    """The flow hash of one 5-tuple; equal to ``flow_hashes`` of a packet carrying it."""
    a, b = (_address_int(src), sport), (_address_int(dst), dport)
    if symmetric and b < a:
        a, b = b, a
    ports = (a[1] << 24) | (b[1] << 8) | proto
    h = _SEED
    for word in (a[0] >> 64, a[0] & MASK64, b[0] >> 64, b[0] & MASK64, ports):
        h = _mix_int(h ^ word)
    return h


def jump_hash(key: int, n: int) -> int:
    """Lamping and Veach's jump consistent hash of ``key`` into ``range(n)``."""
    b, j = -1, 0
    while j < n:
        b = j
        key = (key * 2862933555777941757 + 1) & MASK64
        j = int((b + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return b


def shard_of(hashes: U64Array, n: int) -> npt.NDArray[np.int64]:
    """``jump_hash`` of every hash, vectorised: the instance each flow belongs to."""
    key = hashes.astype(np.uint64)
    b = np.full(len(key), -1, dtype=np.int64)
    j = np.zeros(len(key), dtype=np.int64)
    active = j < n
    while active.any():
        b[active] = j[active]
        key[active] = key[active] * np.uint64(2862933555777941757) + np.uint64(1)
        step = (1 << 31) / ((key[active] >> np.uint64(33)).astype(np.float64) + 1)
        j[active] = ((b[active] + 1) * step).astype(np.int64)
        active = j < n
    return b
