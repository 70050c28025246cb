"""Summaries of samples: percentiles, medians across rounds, ratios."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Summary:
    """Distribution of one set of samples, in the unit the samples were taken in."""

    n: int
    p50: float
    p90: float
    p99: float
    min: float
    max: float
    mean: float

    def scaled(self, factor: float) -> Summary:
        return Summary(
            self.n,
            self.p50 * factor,
            self.p90 * factor,
            self.p99 * factor,
            self.min * factor,
            self.max * factor,
            self.mean * factor,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of sorted samples, linearly interpolated."""
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(samples: Sequence[float]) -> Summary:
    ordered = sorted(samples)
    if not ordered:
        nan = math.nan
        return Summary(0, nan, nan, nan, nan, nan, nan)
    return Summary(
        n=len(ordered),
        p50=percentile(ordered, 50),
        p90=percentile(ordered, 90),
        p99=percentile(ordered, 99),
        min=ordered[0],
        max=ordered[-1],
        mean=statistics.fmean(ordered),
    )


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def ratio(value: float, floor: float | None) -> float | None:
    if floor is None or floor == 0 or math.isnan(floor) or math.isnan(value):
        return None
    return value / floor
