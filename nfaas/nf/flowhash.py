"""The flow hash: one 64-bit number per 5-tuple, the same on the NF and on the trigger side.

Flow affinity (the same flow always reaches the same instance) needs the
dispatching side and the NF to agree on a flow's hash. ``flow_hashes`` hashes
the header rows of a whole batch with NumPy; ``flow_hash`` hashes one 5-tuple
in plain Python (``nfaas.flows``, what the platform computes per event, without
NumPy) and gives the same number. Both take IPv4 and IPv6 alike (IPv4 as ``::ffff:a.b.c.d``).

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

import numpy as np
import numpy.typing as npt

from nfaas.flows import M1 as _M1
from nfaas.flows import M2 as _M2
from nfaas.flows import MASK64, flow_hash, jump_hash
from nfaas.flows import SEED as _SEED
from nfaas.nf.headers import HeaderArray

__all__ = ["MASK64", "U64Array", "flow_hash", "flow_hashes", "jump_hash", "shard_of"]

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
