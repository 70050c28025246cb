"""State an NF keeps, owned by its instance: per-flow tables and counters.

NetBricks gives state to the framework, not to the NF's globals, so that an
NF can run as several instances: with flow affinity (``nfaas.nf.flowhash``)
each flow's entries live in one instance's ``FlowTable``, and counters are
kept per instance and added up when read (``CounterSet.merged``).

A ``FlowTable`` is keyed by the 64-bit flow hash and kept as sorted NumPy
arrays, so a whole batch is looked up with one ``searchsorted`` and inserted
with one merge; entries idle past ``idle_timeout_s`` go at ``expire``. Two
flows whose hashes collide (about one pair in 4 x 10**9 among 6,000 flows)
would share an entry.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from nfaas.errors import GraphError
from nfaas.nf.flowhash import U64Array

Values = npt.NDArray[np.generic]


class FlowTable:
    """Per-flow values of one dtype, with a last-seen time per flow."""

    def __init__(
        self,
        name: str,
        dtype: npt.DTypeLike = np.int64,
        *,
        idle_timeout_s: float = 60.0,
        max_flows: int = 1 << 20,
    ) -> None:
        self.name = name
        self.idle_timeout_s = idle_timeout_s
        self.max_flows = max_flows
        self.keys: U64Array = np.zeros(0, dtype=np.uint64)
        self.values: Values = np.zeros(0, dtype=dtype)
        self.last_seen: npt.NDArray[np.float64] = np.zeros(0, dtype=np.float64)
        #: inserts refused because the table was full
        self.refused = 0

    def __len__(self) -> int:
        return len(self.keys)

    def _positions(self, keys: U64Array) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        pos = np.searchsorted(self.keys, keys)
        inside = pos < len(self.keys)
        found = np.zeros(len(keys), dtype=np.bool_)
        found[inside] = self.keys[pos[inside]] == keys[inside]
        return pos.astype(np.int64), found

    def lookup(
        self, keys: U64Array, now: float | None = None
    ) -> tuple[npt.NDArray[np.bool_], Values]:
        """Which keys are present and their values (zero where absent); ``now`` marks them seen."""
        pos, found = self._positions(keys)
        values = np.zeros(len(keys), dtype=self.values.dtype)
        values[found] = self.values[pos[found]]
        if now is not None:
            self.last_seen[pos[found]] = now
        return found, values

    def upsert(self, keys: U64Array, values: npt.ArrayLike, now: float) -> None:
        """Set ``values`` for ``keys`` (the last one wins for a key given twice)."""
        vals = np.broadcast_to(np.asarray(values, dtype=self.values.dtype), keys.shape)
        # the last occurrence of each key: unique over the reversed arrays
        uniq, first_of_reversed = np.unique(keys[::-1], return_index=True)
        vals = vals[::-1][first_of_reversed]
        pos, found = self._positions(uniq)
        self.values[pos[found]] = vals[found]
        self.last_seen[pos[found]] = now
        new = ~found
        room = max(0, self.max_flows - len(self.keys))
        if new.sum() > room:
            self.refused += int(new.sum()) - room
            new &= np.cumsum(new) <= room
        if new.any():
            at = pos[new]
            self.keys = np.insert(self.keys, at, uniq[new])
            self.values = np.insert(self.values, at, vals[new])
            self.last_seen = np.insert(self.last_seen, at, now)

    def remove(self, keys: U64Array) -> int:
        pos, found = self._positions(keys)
        return self._drop(np.unique(pos[found]))

    def expire(self, now: float) -> int:
        """Remove flows idle for longer than ``idle_timeout_s``; returns how many."""
        return self._drop(np.flatnonzero(now - self.last_seen > self.idle_timeout_s))

    def _drop(self, positions: npt.NDArray[np.int64]) -> int:
        if len(positions):
            self.keys = np.delete(self.keys, positions)
            self.values = np.delete(self.values, positions)
            self.last_seen = np.delete(self.last_seen, positions)
        return len(positions)


class CounterSet:
    """Named integer counters, each a vector (one slot per back-end, per rule, ...)."""

    def __init__(self) -> None:
        self._counters: dict[str, npt.NDArray[np.int64]] = {}

    def declare(self, name: str, size: int = 1) -> None:
        if name in self._counters and len(self._counters[name]) != size:
            raise GraphError(f"counter {name!r} is declared twice with different sizes")
        self._counters.setdefault(name, np.zeros(size, dtype=np.int64))

    def add(self, name: str, amount: int = 1, slot: int = 0) -> None:
        """Add to one slot; a counter not declared is made with one slot."""
        if name not in self._counters:
            self.declare(name, max(1, slot + 1))
        self._counters[name][slot] += amount

    def add_each(
        self, name: str, slots: npt.NDArray[np.integer], weights: npt.ArrayLike | None = None
    ) -> None:
        """Add one (or ``weights``) per packet to the slot each packet names: one ``bincount``."""
        counter = self._counters.get(name)
        if counter is None:
            raise GraphError(f"counter {name!r} is not declared")
        counter += np.bincount(slots, weights=weights, minlength=len(counter))[
            : len(counter)
        ].astype(np.int64)

    def get(self, name: str) -> npt.NDArray[np.int64]:
        return self._counters.get(name, np.zeros(1, dtype=np.int64))

    def value(self, name: str, slot: int = 0) -> int:
        return int(self.get(name)[slot])

    def names(self) -> list[str]:
        return sorted(self._counters)

    def snapshot(self) -> dict[str, list[int]]:
        return {name: c.tolist() for name, c in sorted(self._counters.items())}

    @classmethod
    def merged(cls, sets: Iterable[CounterSet]) -> CounterSet:
        """The sum of counters kept by several instances of one NF."""
        out = cls()
        for s in sets:
            for name, counter in s._counters.items():
                mine = out._counters.get(name)
                if mine is None:
                    out._counters[name] = counter.copy()
                elif len(mine) == len(counter):
                    mine += counter
                else:
                    raise GraphError(f"counter {name!r} has different sizes in different instances")
        return out
