from __future__ import annotations

import numpy as np

from nfaas.keepalive.base import ArrivalHistory
from nfaas.keepalive.forecast import SeasonalForecast, refit_points
from nfaas.keepalive.seasonality import detect_period, seasonal_profile


def hourly_batches(hours: int, length: int = 4) -> np.ndarray:
    counts = np.zeros(hours * 60, dtype=np.int64)
    for start in range(0, hours * 60, 60):
        counts[start : start + length] = 3
    return counts


def test_no_history_and_the_first_hour_get_the_documented_default() -> None:
    policy = SeasonalForecast()
    assert policy.decide(ArrivalHistory(np.zeros(10, dtype=np.int64))).mode == "default"
    counts = np.zeros(50, dtype=np.int64)
    counts[[3, 20, 45]] = 1
    d = policy.decide(ArrivalHistory(counts))
    assert (d.mode, d.prewarm_min, d.keepalive_min) == ("default", 0.0, 240.0)


def test_period_is_found_for_timers_and_batches_but_not_for_noise() -> None:
    timer = np.zeros(600)
    timer[::15] = 1
    assert detect_period(timer, 0.2).period == 15
    assert detect_period(hourly_batches(6).astype(float), 0.2).period == 60
    noise = np.random.default_rng(0).poisson(0.3, 2000).astype(float)
    assert detect_period(noise, 0.2).strength == 0.0


def test_seasonal_profile_uses_earlier_cycles_only() -> None:
    counts = np.array([1.0, 0.0, 5.0, 0.0, 3.0, 0.0])
    profile = seasonal_profile(counts, period=2, gamma=0.5)
    assert list(profile[:2]) == [0.0, 0.0]  # no earlier cycle
    assert profile[2] == 1.0  # the one earlier cycle
    assert abs(profile[4] - 11 / 3) < 1e-12  # newest cycle twice the weight: (2 x 5 + 1) / 3
    assert len(profile) == len(counts) + 2


def test_after_a_batch_it_unloads_and_prewarms_before_the_next_one() -> None:
    w = SeasonalForecast().windows(ArrivalHistory(hourly_batches(8)))
    last = w.decision(-1)  # after the last minute of the last batch (minute 423)
    assert last.mode == "seasonal"
    assert 45 <= last.prewarm_min <= 56  # the next batch starts 57 minutes later
    assert last.prewarm_min + last.keepalive_min >= 57


def test_a_busy_function_needs_more_than_one_ready_instance() -> None:
    counts = np.full(200, 120, dtype=np.int64)  # 120 events a minute of 2 s each
    d = SeasonalForecast().decide(ArrivalHistory(counts, duration_s=2.0))
    assert d.ready == 4 and d.prewarm_min == 0.0


def test_refits_are_rare() -> None:
    assert refit_points(7 * 1440) == [60, 120, 240, 480, 960, 1440, 2880, 4320, 5760, 7200, 8640]


def test_the_live_decision_is_the_replays_last_row() -> None:
    from nfaas.keepalive.synthetic import SyntheticConfig, synthetic_trace

    trace = synthetic_trace(SyntheticConfig(functions=12, days=0.5, seed=3))
    policy = SeasonalForecast()
    for row in trace.counts.astype(np.int64):
        if row.any():
            history = ArrivalHistory(row[: int(np.flatnonzero(row)[-1]) + 1])
            assert policy.decide(history) == policy.windows(history).decision(-1)
