"""The hybrid histogram policy of "Serverless in the Wild" (Shahrad et al., ATC 2020, section 4.2).

Per function (or application), a histogram of idle times in 1-minute bins
over a range (4 hours). After each invocation:

1. if more than ``oob_threshold`` of the idle times seen fall out of the
   range, a time-series forecast of the next idle time decides (the paper's
   ARIMA; here an AR(1) fitted by Yule-Walker, ``idle_forecast.py``): load
   at the forecast less ``forecast_margin``, keep until it plus the margin;
2. else, if the histogram is representative (the coefficient of variation
   of its bin counts at least ``cv_threshold``), pre-warm at the
   ``head_percentile`` less ``margin`` and keep alive until the
   ``tail_percentile`` plus ``margin`` (the paper: 5th, 99th, 10 %);
3. else (and with no history at all: the documented default) keep the
   instance loaded for the whole range and never pre-warm, the
   conservative fixed keep-alive.

Idle times are measured between invocation minutes: one of ``g`` minutes
falls in bin ``g - 1``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, ClassVar

from nfaas.errors import InvalidPolicy
from nfaas.keepalive.base import ArrivalHistory, Decision, KeepAlivePolicy, Windows, check_range

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

MODES = ("default", "histogram", "forecast")


@dataclass(frozen=True, slots=True)
class HybridConfig:
    #: histogram range, in minutes (= number of 1-minute bins)
    range_min: float = 240.0
    head_percentile: float = 5.0
    tail_percentile: float = 99.0
    #: taken off the head and added to the tail (the paper: 10 %)
    margin: float = 0.10
    #: the histogram is representative when its bin counts' CV reaches this
    cv_threshold: float = 2.0
    #: share of idle times out of range above which the forecast decides
    oob_threshold: float = 0.5
    #: margin on both sides of a forecast idle time (the paper: 15 %)
    forecast_margin: float = 0.15

    def __post_init__(self) -> None:
        check_range("hybrid", "range_min", self.range_min, 2.0, 1440.0)
        check_range("hybrid", "head_percentile", self.head_percentile, 0.0, 50.0)
        check_range("hybrid", "tail_percentile", self.tail_percentile, 50.0, 100.0)
        if self.head_percentile >= self.tail_percentile:
            raise InvalidPolicy(
                f"policy 'hybrid': head_percentile ({self.head_percentile:g}) must be below "
                f"tail_percentile ({self.tail_percentile:g})"
            )
        check_range("hybrid", "margin", self.margin, 0.0, 0.99)
        check_range("hybrid", "cv_threshold", self.cv_threshold, 0.0, 1000.0)
        check_range("hybrid", "oob_threshold", self.oob_threshold, 0.0, 1.0, low_open=True)
        check_range("hybrid", "forecast_margin", self.forecast_margin, 0.0, 0.99)

    @property
    def bins(self) -> int:
        return round(self.range_min)


class HybridHistogram(KeepAlivePolicy):
    name: ClassVar[str] = "hybrid"
    sweep: ClassVar[tuple[str, tuple[float, ...]]] = (
        "range_min",
        (15.0, 30.0, 60.0, 120.0, 240.0, 480.0),
    )

    def __init__(self, config: HybridConfig | None = None) -> None:
        self.config = config or HybridConfig()

    def default(self) -> Decision:
        return Decision(0.0, float(self.config.bins), 1, "default")

    def parameters(self) -> dict[str, float]:
        return asdict(self.config)

    def windows(self, history: ArrivalHistory) -> Windows:
        import numpy as np

        from nfaas.keepalive.histogram import prefix_cv
        from nfaas.keepalive.idle_forecast import forecast_idle_times

        cfg = self.config
        minutes = np.flatnonzero(history.counts).astype(np.int64)
        n = len(minutes)
        gaps = np.diff(minutes)
        n_bins = cfg.bins
        bins = np.where(gaps <= n_bins, gaps - 1, -1).astype(np.int64)
        seen = np.arange(n, dtype=np.float64)
        oob = np.r_[0.0, np.cumsum(bins < 0)]
        with np.errstate(divide="ignore", invalid="ignore"):
            oob_share = np.where(seen > 0, oob / np.maximum(seen, 1.0), 0.0)
        use_forecast = oob_share > cfg.oob_threshold
        use_histogram = ~use_forecast & (prefix_cv(bins, n_bins) >= cfg.cv_threshold)

        prewarm = np.zeros(n, dtype=np.float64)
        keepalive = np.full(n, float(n_bins))
        mode = np.zeros(n, dtype=np.int8)
        if use_histogram.any():
            head, tail = self._percentile_windows(bins, n_bins)
            prewarm[use_histogram] = head[use_histogram]
            keepalive[use_histogram] = tail[use_histogram] - head[use_histogram]
            mode[use_histogram] = 1
        rows = np.flatnonzero(use_forecast)
        if len(rows):
            predicted = forecast_idle_times(gaps.astype(np.float64), rows)
            low = np.floor(np.round(predicted * (1.0 - cfg.forecast_margin), 6))
            high = np.ceil(np.round(predicted * (1.0 + cfg.forecast_margin), 6))
            prewarm[rows] = low
            keepalive[rows] = np.maximum(high - low, 1.0)
            mode[rows] = 2
        return Windows(minutes, prewarm, keepalive, np.ones(n, dtype=np.int64), mode, MODES)

    def _percentile_windows(
        self, bins: NDArray[np.int64], n_bins: int
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Pre-warm and keep-alive end (minutes after the invocation) from the percentiles."""
        import numpy as np

        from nfaas.keepalive.histogram import prefix_percentiles

        cfg = self.config
        q = prefix_percentiles(bins, n_bins, (cfg.head_percentile / 100, cfg.tail_percentile / 100))
        head_gap = q[0].astype(np.float64) + 1.0  # bin b holds idle times of b + 1 minutes
        tail_gap = q[1].astype(np.float64) + 1.0
        # rounded first: 100 x 1.1 is 110.00000000000001 in floating point
        head = np.floor(np.round(head_gap * (1.0 - cfg.margin), 6))
        end = np.ceil(np.round(tail_gap * (1.0 + cfg.margin), 6))
        return head, np.maximum(end, head + 1.0)
