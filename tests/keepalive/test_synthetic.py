from __future__ import annotations

import numpy as np
import pytest

from nfaas.errors import InvalidRequest
from nfaas.keepalive.synthetic import PERIODIC_MIX, SyntheticConfig, synthetic_trace


def test_same_seed_same_trace_and_another_seed_another() -> None:
    a = synthetic_trace(SyntheticConfig(functions=40, days=0.5, seed=7))
    b = synthetic_trace(SyntheticConfig(functions=40, days=0.5, seed=7))
    c = synthetic_trace(SyntheticConfig(functions=40, days=0.5, seed=8))
    assert np.array_equal(a.counts, b.counts) and a.names == b.names
    assert not np.array_equal(a.counts, c.counts)
    assert a.counts.shape == (40, 720) and a.minutes == 720


def test_shape_heavy_tailed_popularity_and_every_kind() -> None:
    trace = synthetic_trace(SyntheticConfig(functions=400, days=1, seed=1))
    per_function = np.sort(trace.counts.sum(axis=1))[::-1]
    top = per_function[: len(per_function) // 100].sum()
    assert top > 0.3 * per_function.sum()  # 1 % of functions take a large share
    assert np.median(per_function) < per_function.mean() / 5
    assert set(trace.kinds) == {"http", "timer", "bursty", "batch", "rare"}
    timers = [i for i, k in enumerate(trace.kinds) if k == "timer"]
    gaps = np.diff(np.flatnonzero(trace.counts[timers[0]]))
    assert len(set(gaps)) == 1  # strictly periodic
    assert 32 <= trace.memory_mb.min() and trace.memory_mb.max() <= 2048


def test_periodic_mix_has_no_bursty_or_rare_functions() -> None:
    trace = synthetic_trace(SyntheticConfig(functions=50, days=0.2, mix=dict(PERIODIC_MIX)))
    assert set(trace.kinds) <= {"http", "timer", "batch"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"functions": 0}, "functions must be in"),
        ({"days": 100}, "days must be in"),
        ({"mix": {"cron": 1.0}}, "mix must give"),
        ({"diurnal": 2}, "diurnal must be in"),
    ],
)
def test_bad_generator_parameters(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        SyntheticConfig(**kwargs)  # type: ignore[arg-type]
