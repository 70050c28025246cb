"""Maglev consistent hashing (Eisenbud et al., NSDI 2016, section 3.4).

Each back-end has a preference order over the ``size`` slots of a lookup
table (a permutation given by an offset and a skip derived from its name);
back-ends take turns claiming their next preferred free slot until the table
is full. Two properties follow, which the tests check:

* balance: every back-end holds ``size // n`` or ``size // n + 1`` slots;
* minimal disruption: when a back-end goes, the slots of the others mostly
  stay where they were (a few percent move, not the ~(n-1)/n of modulo hashing).

``size`` must be prime (so that every skip walks the whole table) and should
be well above 100 x the number of back-ends. A packet's back-end is
``table[flow_hash % size]``: one vectorised gather per batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from nfaas.errors import GraphError
from nfaas.nf.flowhash import U64Array

DEFAULT_SIZE = 65_537


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    f = 2
    while f * f <= n:
        if n % f == 0:
            return False
        f += 1
    return True


def _hash(name: str, salt: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8, salt=salt).digest(), "big")


class MaglevTable:
    def __init__(self, backends: Sequence[str], size: int = DEFAULT_SIZE) -> None:
        if not backends:
            raise GraphError("a Maglev table needs at least one back-end")
        if len(set(backends)) != len(backends):
            raise GraphError("back-end names must be unique")
        if not _is_prime(size) or size <= len(backends):
            raise GraphError(f"the table size must be a prime above the back-end count, not {size}")
        self.backends = list(backends)
        self.size = size
        self.table: npt.NDArray[np.int64] = self._populate()

    def _populate(self) -> npt.NDArray[np.int64]:
        m, n = self.size, len(self.backends)
        offsets = [_hash(b, b"offset") % m for b in self.backends]
        skips = [_hash(b, b"skip") % (m - 1) + 1 for b in self.backends]
        entry = [-1] * m
        taken = [0] * n
        filled = 0
        while True:
            for i in range(n):
                offset, skip, j = offsets[i], skips[i], taken[i]
                slot = (offset + j * skip) % m
                while entry[slot] >= 0:
                    j += 1
                    slot = (offset + j * skip) % m
                entry[slot] = i
                taken[i] = j + 1
                filled += 1
                if filled == m:
                    return np.array(entry, dtype=np.int64)

    def lookup(self, hashes: U64Array) -> npt.NDArray[np.int64]:
        """The back-end index of every flow hash."""
        found: npt.NDArray[np.int64] = self.table[(hashes % np.uint64(self.size)).astype(np.int64)]
        return found

    def slots_per_backend(self) -> npt.NDArray[np.int64]:
        return np.bincount(self.table, minlength=len(self.backends)).astype(np.int64)

    def without(self, backend: str) -> MaglevTable:
        """The table of the same back-ends less ``backend``."""
        rest = [b for b in self.backends if b != backend]
        if len(rest) == len(self.backends):
            raise GraphError(f"no back-end {backend!r}")
        return MaglevTable(rest, self.size)
