from __future__ import annotations

import numpy as np

from nfaas.keepalive.base import constant_windows
from nfaas.keepalive.fixed import FixedConfig, FixedKeepAlive
from nfaas.keepalive.never import NeverKeep
from nfaas.keepalive.registry import make_policy
from nfaas.keepalive.simulator import replay, simulate, sweep
from nfaas.keepalive.synthetic import SyntheticConfig, synthetic_trace
from nfaas.keepalive.trace import Trace
from tests.keepalive.conftest import counts_at


def test_replay_counts_cold_starts_and_idle_loaded_memory() -> None:
    counts = counts_at([0, 5, 5, 30], length=40)
    w = constant_windows(np.flatnonzero(counts), 0.0, 10.0, "fixed")
    out = replay(counts, w, memory_mb=100.0)
    # 0 cold; 5 warm (idle 5 <= 10); 30 cold (idle 25); 4 invocations
    assert (out.invocations, out.cold_starts) == (4, 2)
    # loaded idle: 5 + 10 + min(10, 40 - 30) minutes
    assert out.wasted_mb_min == 100.0 * (5 + 10 + 10)


def test_replay_with_a_prewarm_window() -> None:
    counts = counts_at([0, 8, 9], length=20)
    w = constant_windows(np.flatnonzero(counts), 7.0, 2.0, "x")  # loaded [7, 9] after each
    out = replay(counts, w, memory_mb=1.0)
    assert out.cold_starts == 2  # 0 (first) and 9 (idle 1 < 7); 8 is warm
    assert out.wasted_mb_min == 1.0 + 0 + 2  # 8 - 7, none after 8 (idle 1), 2 after 9


def _trace(rows: list[list[int]], minutes: int) -> Trace:
    counts = np.zeros((len(rows), minutes), dtype=np.int32)
    for i, row in enumerate(rows):
        np.add.at(counts[i], row, 1)
    n = len(rows)
    return Trace(
        tuple(f"f{i}" for i in range(n)), counts, np.full(n, 128.0), np.ones(n), ("x",) * n
    )


def test_simulate_reports_shares_percentiles_and_waste() -> None:
    trace = _trace([[0, 1, 2, 3], [0, 100], [0]], minutes=120)
    never = simulate(trace, NeverKeep())
    assert never.cold_share == 1 and never.wasted_gb_hours == 0
    fixed = simulate(trace, FixedKeepAlive(FixedConfig(keep_alive_min=10)))
    assert (fixed.invocations, fixed.cold_starts) == (7, 4)
    assert fixed.cold_share_p99 > 0.99 and 0.25 <= fixed.cold_share_p75 <= 1.0
    assert fixed.modes == {"fixed": 7}
    assert fixed.as_dict()["unit_days_per_second"] > 0


def test_longer_keepalive_trades_memory_for_cold_starts_on_a_synthetic_trace() -> None:
    trace = synthetic_trace(SyntheticConfig(functions=60, days=0.5, seed=2))
    curve = sweep(trace, "fixed", [1, 10, 60])
    colds = [r.cold_share for r in curve]
    waste = [r.wasted_gb_hours for r in curve]
    assert colds == sorted(colds, reverse=True) and waste == sorted(waste)


def test_hybrid_beats_fixed_ten_minutes_on_timers() -> None:
    rows = [list(range(p % 7, 24 * 60, p)) for p in (5, 15, 30, 60, 120) for _ in range(3)]
    trace = _trace(rows, minutes=24 * 60)
    hybrid = simulate(trace, make_policy("hybrid"))
    fixed = simulate(trace, make_policy("fixed"))
    assert hybrid.cold_share < fixed.cold_share
    assert hybrid.wasted_gb_hours < 0.6 * fixed.wasted_gb_hours
