from __future__ import annotations

import numpy as np

from nfaas.keepalive.base import ArrivalHistory
from nfaas.keepalive.hybrid import HybridConfig, HybridHistogram
from tests.keepalive.conftest import counts_at


def test_no_history_gets_the_documented_default_the_whole_range() -> None:
    policy = HybridHistogram()
    d = policy.decide(ArrivalHistory(np.zeros(30, dtype=np.int64)))
    assert (d.prewarm_min, d.keepalive_min, d.mode) == (0.0, 240.0, "default")
    first = policy.decide(ArrivalHistory(counts_at([7])))
    assert (first.keepalive_min, first.mode) == (240.0, "default")


def test_a_timer_is_prewarmed_just_before_its_next_tick() -> None:
    w = HybridHistogram().windows(ArrivalHistory(counts_at(list(range(0, 100, 5)))))
    d = w.decision(-1)
    # idle times of 5 minutes: pre-warm at 5 x 0.9 -> 4, keep until 5 x 1.1 -> 6
    assert (d.mode, d.prewarm_min, d.prewarm_min + d.keepalive_min) == ("histogram", 4.0, 6.0)


def test_percentiles_with_margins_on_a_spread_of_idle_times() -> None:
    idle = [10] * 5 + [20] * 90 + [100] * 5  # 5th percentile 10, 99th 100
    minutes = list(np.cumsum([0, *idle]))
    d = HybridHistogram().decide(ArrivalHistory(counts_at(minutes)))
    assert d.mode == "histogram"
    assert d.prewarm_min == 9.0  # 10 less 10 %
    assert d.prewarm_min + d.keepalive_min == 110.0  # 100 plus 10 %


def test_flat_histogram_is_not_representative_and_falls_back() -> None:
    idle = list(range(1, 121))  # one idle time in each of 120 bins: CV 1 < 2
    d = HybridHistogram().decide(ArrivalHistory(counts_at(list(np.cumsum([0, *idle])))))
    assert (d.mode, d.prewarm_min, d.keepalive_min) == ("default", 0.0, 240.0)


def test_idle_times_out_of_range_use_the_time_series_forecast() -> None:
    minutes = list(range(0, 12 * 300, 300))  # every 5 h: out of a 4 h range
    d = HybridHistogram().decide(ArrivalHistory(counts_at(minutes)))
    assert d.mode == "forecast"
    # predicted 300 minutes, 15 % margins on both sides
    assert (d.prewarm_min, d.prewarm_min + d.keepalive_min) == (255.0, 345.0)


def test_decisions_are_causal() -> None:
    rng = np.random.default_rng(3)
    counts = rng.poisson(0.05, 3000)
    policy = HybridHistogram(HybridConfig(range_min=60))
    full = policy.windows(ArrivalHistory(counts))
    changed = counts.copy()
    changed[2000:] = rng.poisson(0.5, 1000)
    other = policy.windows(ArrivalHistory(changed))
    before = full.minutes < 2000
    assert np.array_equal(full.prewarm[before], other.prewarm[: before.sum()])
    assert np.array_equal(full.keepalive[before], other.keepalive[: before.sum()])
