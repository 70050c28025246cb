from __future__ import annotations

import numpy as np

from nfaas.keepalive import histogram


def _slow_percentile(values: list[int], q: float) -> int:
    ordered = sorted(v for v in values if v >= 0)
    if not ordered:
        return -1
    counts = np.bincount(ordered)
    cdf = np.cumsum(counts)
    return int(np.argmax(cdf >= q * len(ordered)))


def test_prefix_percentiles_match_a_rebuild_per_prefix_across_chunks(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(histogram, "_CHUNK_ROWS", 7)  # many chunk boundaries
    rng = np.random.default_rng(0)
    bins = rng.integers(-1, 20, 60)
    got = histogram.prefix_percentiles(bins, 20, (0.05, 0.5, 0.99))
    for i in range(len(bins) + 1):
        for k, q in enumerate((0.05, 0.5, 0.99)):
            assert got[k, i] == _slow_percentile(list(bins[:i]), q), (i, q)


def test_prefix_cv_matches_numpy_on_each_prefix() -> None:
    rng = np.random.default_rng(1)
    bins = rng.integers(-1, 10, 40)
    cv = histogram.prefix_cv(bins, 10)
    assert cv[0] == 0.0
    for i in range(1, len(bins) + 1):
        seen = bins[:i][bins[:i] >= 0]
        if len(seen) == 0:
            assert cv[i] == 0.0
            continue
        counts = np.bincount(seen, minlength=10).astype(float)
        assert abs(cv[i] - counts.std() / counts.mean()) < 1e-9
