"""Latency histograms over time: the duration histogram's new counts per interval.

Sampled when the dashboard asks (at most once per ``min_interval_s``), so the
platform does no work for it while nobody watches; a point then covers the
time since the previous sample, and says so (``t0``, ``t1``).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.core import Metric

#: "app/function@version", as in the JSON metrics
VersionName = str


class LatencyHistory:
    def __init__(
        self,
        source: Callable[[], Iterable[Metric]],
        *,
        keep: int = 120,
        min_interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._source = source
        self._keep = keep
        self._min_interval = min_interval_s
        self._clock = clock
        self._last_at = clock()
        self._sampled = False
        self._last: dict[VersionName, list[float]] = {}
        self._points: dict[VersionName, deque[dict[str, Any]]] = {}
        #: the buckets' upper bounds in ms (the last is +Inf, shown as null)
        self.bounds_ms: list[float | None] = []

    def sample(self) -> None:
        now = self._clock()
        if self._sampled and now - self._last_at < self._min_interval:
            return
        self._sampled = True
        for name, cumulative in self._read().items():
            before = self._last.get(name, [0.0] * len(cumulative))
            counts = [c - b for c, b in zip(_steps(cumulative), _steps(before), strict=True)]
            self._last[name] = cumulative
            if sum(counts) > 0:
                points = self._points.setdefault(name, deque(maxlen=self._keep))
                points.append({"t0": self._last_at, "t1": now, "counts": counts,
                               "p50_ms": self._quantile(counts, 0.5),
                               "p99_ms": self._quantile(counts, 0.99)})  # fmt: skip
        self._last_at = now

    def series(self, names: set[VersionName]) -> dict[VersionName, list[dict[str, Any]]]:
        return {n: list(p) for n, p in sorted(self._points.items()) if n in names}

    def _read(self) -> dict[VersionName, list[float]]:
        out: dict[VersionName, list[float]] = {}
        bounds: list[float | None] = []
        for metric in self._source():
            for sample in metric.samples:
                if not sample.name.endswith("_bucket"):
                    continue
                labels = sample.labels
                name = f"{labels['app']}/{labels['function']}@{labels['version']}"
                out.setdefault(name, []).append(sample.value)
                if len(out) == 1:
                    le = float(labels["le"])
                    bounds.append(None if math.isinf(le) else le * 1000)
        if bounds:
            self.bounds_ms = bounds
        return out

    def _quantile(self, counts: list[float], q: float) -> float | None:
        """The upper bound of the bucket holding the ``q`` quantile (None: above the last)."""
        total, running = sum(counts), 0.0
        for bound, count in zip(self.bounds_ms, counts, strict=False):
            running += count
            if running >= q * total:
                return bound
        return None


def _steps(cumulative: list[float]) -> list[float]:
    """Cumulative bucket counts to counts per bucket."""
    return [c - (cumulative[i - 1] if i else 0.0) for i, c in enumerate(cumulative)]
