"""Flow tables and counters: per instance, mergeable across instances."""

from __future__ import annotations

import numpy as np
import pytest

from nfaas.errors import GraphError
from nfaas.nf.state import CounterSet, FlowTable


def keys(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


def test_upsert_lookup_and_last_write_wins() -> None:
    table = FlowTable("t", np.int32)
    table.upsert(keys(5, 1, 9, 5), np.array([50, 10, 90, 55]), now=1.0)
    found, values = table.lookup(keys(1, 2, 5, 9))
    assert found.tolist() == [True, False, True, True]
    assert values.tolist() == [10, 0, 55, 90]
    table.upsert(keys(2, 9), np.array([20, 99]), now=2.0)
    assert table.lookup(keys(2, 9))[1].tolist() == [20, 99]
    assert len(table) == 4
    assert table.remove(keys(1, 7)) == 1 and len(table) == 3


def test_idle_flows_expire_and_a_lookup_keeps_them_alive() -> None:
    table = FlowTable("t", idle_timeout_s=10)
    table.upsert(keys(1, 2, 3), 0, now=0.0)
    table.lookup(keys(2), now=8.0)
    assert table.expire(now=12.0) == 2
    assert table.lookup(keys(1, 2, 3))[0].tolist() == [False, True, False]


def test_a_full_table_refuses_and_counts() -> None:
    table = FlowTable("t", max_flows=3)
    table.upsert(keys(1, 2, 3, 4, 5), 7, now=0.0)
    assert len(table) == 3 and table.refused == 2


def test_counters_merge_across_instances() -> None:
    a, b = CounterSet(), CounterSet()
    for c in (a, b):
        c.declare("per_backend", 3)
    a.add_each("per_backend", np.array([0, 0, 2]))
    b.add_each("per_backend", np.array([1, 2]), weights=np.array([10, 20]))
    a.add("drops", 4)
    merged = CounterSet.merged([a, b])
    assert merged.snapshot() == {"drops": [4], "per_backend": [2, 10, 21]}
    b.declare("drops", 2)
    with pytest.raises(GraphError, match="different sizes"):
        CounterSet.merged([a, b])
    with pytest.raises(GraphError, match="not declared"):
        a.add_each("nothing", np.array([0]))
