"""Histograms of idle times as they grow, one per invocation, in array operations.

The hybrid policy needs, after the ``i``-th invocation, percentiles and the
coefficient of variation of the histogram of the idle times seen *before*
it. Rebuilding a histogram per invocation in Python is what would make a
replay of days slow; here every prefix is computed at once, in chunks of rows
so memory stays bounded (rows x bins integers per chunk).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

_CHUNK_ROWS = 2048


def prefix_percentiles(
    bins: NDArray[np.int64], n_bins: int, quantiles: tuple[float, ...]
) -> NDArray[np.int64]:
    """Per row ``i`` (0..len(bins)), the bin of each quantile over ``bins[:i]``.

    ``bins`` holds one bin index per idle time, or -1 for an idle time out of
    range (not counted). The answer has one row per quantile and one column
    per prefix; -1 where the prefix holds no in-range idle time.
    """
    rows = len(bins) + 1
    out = np.full((len(quantiles), rows), -1, dtype=np.int64)
    q = np.asarray(quantiles, dtype=np.float64)[:, None]
    base = np.zeros(n_bins, dtype=np.int32)
    for start in range(0, rows, _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, rows)
        # row i counts bins[:i]; idle time j (start <= j < stop - 1) first counts in row j + 1
        added = bins[start : stop - 1]
        block = np.zeros((stop - start, n_bins), dtype=np.int32)
        keep = added >= 0
        block[np.flatnonzero(keep) + 1, added[keep]] = 1
        np.cumsum(block, axis=0, out=block)
        block += base
        cdf = np.cumsum(block, axis=1)
        total = cdf[:, -1]
        hit = cdf[None, :, :] >= (q * total[None, :])[:, :, None]
        found = hit.argmax(axis=2)
        out[:, start:stop] = np.where(total[None, :] > 0, found, -1)
        base = block[-1].copy()
        if stop < rows and bins[stop - 1] >= 0:
            base[bins[stop - 1]] += 1
    return out


def prefix_cv(bins: NDArray[np.int64], n_bins: int) -> NDArray[np.float64]:
    """Per row ``i``, the coefficient of variation of the bin counts of ``bins[:i]``.

    0 for an empty histogram (never representative). The sum of squared
    counts grows by ``2c + 1`` when a bin holding ``c`` gets one more, so
    every prefix comes from one cumulative sum.
    """
    in_range = bins >= 0
    idx = np.flatnonzero(in_range)
    delta = np.zeros(len(bins), dtype=np.float64)
    if len(idx):
        b = bins[idx]
        order = np.argsort(b, kind="stable")
        sorted_bins = b[order]
        first = np.r_[0, np.flatnonzero(np.diff(sorted_bins)) + 1]
        group_start = np.repeat(first, np.diff(np.r_[first, len(sorted_bins)]))
        earlier = np.empty(len(idx), dtype=np.float64)
        earlier[order] = np.arange(len(idx)) - group_start
        delta[idx] = 2.0 * earlier + 1.0
    sumsq = np.r_[0.0, np.cumsum(delta)]
    count = np.r_[0.0, np.cumsum(in_range.astype(np.float64))]
    mean = count / n_bins
    var = np.maximum(sumsq / n_bins - mean**2, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        cv = np.where(count > 0, np.sqrt(var) / np.where(mean > 0, mean, 1.0), 0.0)
    return cv.astype(np.float64)
