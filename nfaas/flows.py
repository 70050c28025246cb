"""The flow hash of one 5-tuple, in plain Python: shared by the platform and ``nfaas.nf``.

Flow affinity needs the side that dispatches events (function management,
``nfaas.lifecycle.affinity``) and the network function (``nfaas.nf.flowhash``,
which computes the same hash for a whole batch with NumPy) to agree on a
flow's hash. This module is the scalar half, with the standard library only,
so that the platform does not import NumPy for it.

The mixing is splitmix64's finaliser over the address words and a word of the
ports and protocol; IPv4 is read as ``::ffff:a.b.c.d``, so both IP versions
hash alike. It is not keyed: it spreads flows, it does not resist an adversary
choosing flows to collide.
"""

from __future__ import annotations

import ipaddress

MASK64 = (1 << 64) - 1
SEED = 0x9E3779B97F4A7C15
M1, M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB

#: the local address of a port trigger's flows: the trigger knows its port, and the host
#: it listens on may be any address; an NF makes its packets of events to this address
LOCAL_ADDRESS = "127.0.0.1"


def mix64(x: int) -> int:
    """splitmix64's finaliser of a 64-bit word."""
    x ^= x >> 30
    x = (x * M1) & MASK64
    x ^= x >> 27
    x = (x * M2) & MASK64
    return x ^ (x >> 31)


def address_int(address: str | bytes) -> int:
    """An address as a 128-bit integer, IPv4 as IPv4-mapped IPv6."""
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
    """The 64-bit hash of one 5-tuple (``symmetric``: both directions hash alike)."""
    a, b = (address_int(src), sport), (address_int(dst), dport)
    if symmetric and b < a:
        a, b = b, a
    ports = (a[1] << 24) | (b[1] << 8) | proto
    h = SEED
    for word in (a[0] >> 64, a[0] & MASK64, b[0] >> 64, b[0] & MASK64, ports):
        h = mix64(h ^ word)
    return h


def jump_hash(key: int, n: int) -> int:
    """Lamping and Veach's jump consistent hash of ``key`` into ``range(n)``."""
    b, j = -1, 0
    while j < n:
        b = j
        key = (key * 2862933555777941757 + 1) & MASK64
        j = int((b + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return b
