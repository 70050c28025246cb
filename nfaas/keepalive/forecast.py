"""A forecasting policy: seasonal exponential smoothing of per-minute arrivals.

Where the hybrid policy looks at *how long* a function was idle, this one
looks at *when* its events come. After each invocation it forecasts the
expected arrivals ``lam[h]`` in each of the next ``horizon_min`` minutes (the
seasonal profile of ``seasonality.py`` if the function has a period, else
its level), treats arrivals as Poisson
so the next one comes by minute ``h`` with probability
``1 - exp(-sum(lam[1..h]))``, and, like the hybrid policy but on that
forecast distribution, pre-warms at its ``head_quantile`` and keeps alive to
its ``tail_quantile`` with ``margin``. When the forecast puts less than
``head_quantile`` of the mass inside the horizon, the instance is unloaded.

The model is refitted (period detected, blend weight set) after 1, 2, 4, 8
and 16 hours of history and then once a day: fitting is the expensive part,
and a function's rhythm does not change from one minute to the next.
How many instances to hold is the forecast peak rate times the function's
duration (Little's law), at least one.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, ClassVar

from nfaas.errors import InvalidPolicy
from nfaas.keepalive.base import ArrivalHistory, Decision, KeepAlivePolicy, Windows, check_range

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from nfaas.keepalive.seasonality import Seasonality

MODES = ("default", "level", "seasonal", "unload")
_CHUNK_ROWS = 4096


@dataclass(frozen=True, slots=True)
class ForecastConfig:
    horizon_min: float = 240.0
    head_quantile: float = 0.05
    tail_quantile: float = 0.99
    margin: float = 0.10
    #: weight of the newest minute in the level
    level_alpha: float = 0.05
    #: weight of the newest cycle in the seasonal profile
    seasonal_gamma: float = 0.3
    #: autocorrelation below which a function is treated as not periodic
    min_strength: float = 0.2

    def __post_init__(self) -> None:
        check_range("forecast", "horizon_min", self.horizon_min, 2.0, 1440.0)
        check_range("forecast", "head_quantile", self.head_quantile, 0.0, 0.5)
        check_range("forecast", "tail_quantile", self.tail_quantile, 0.5, 0.9999)
        if self.head_quantile >= self.tail_quantile:
            raise InvalidPolicy(
                f"policy 'forecast': head_quantile ({self.head_quantile:g}) must be below "
                f"tail_quantile ({self.tail_quantile:g})"
            )
        check_range("forecast", "margin", self.margin, 0.0, 0.99)
        check_range("forecast", "level_alpha", self.level_alpha, 0.0, 1.0, low_open=True)
        check_range("forecast", "seasonal_gamma", self.seasonal_gamma, 0.0, 1.0, low_open=True)
        check_range("forecast", "min_strength", self.min_strength, 0.0, 1.0)


def refit_points(length: int) -> list[int]:
    """Minutes of history after which the model is refitted."""
    points = [60, 120, 240, 480, 960, 1440]
    while points[-1] + 1440 < length:
        points.append(points[-1] + 1440)
    return [p for p in points if p < length]


class SeasonalForecast(KeepAlivePolicy):
    name: ClassVar[str] = "forecast"
    sweep: ClassVar[tuple[str, tuple[float, ...]]] = (
        "tail_quantile",
        (0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999),
    )

    def __init__(self, config: ForecastConfig | None = None) -> None:
        self.config = config or ForecastConfig()

    def default(self) -> Decision:
        # No history: nothing to forecast from; keep for the horizon, as the hybrid does.
        return Decision(0.0, float(self.horizon), 1, "default")

    def parameters(self) -> dict[str, float]:
        return asdict(self.config)

    @property
    def horizon(self) -> int:
        return round(self.config.horizon_min)

    def windows(self, history: ArrivalHistory) -> Windows:
        return self._windows(history, last_only=False)

    def decide(self, history: ArrivalHistory) -> Decision:
        """The last decision only: the live platform's question, without the replay's rows."""
        import numpy as np

        last = np.flatnonzero(history.counts)
        if len(last) == 0:
            return self.default()
        trimmed = ArrivalHistory(history.counts[: int(last[-1]) + 1], history.duration_s)
        return self._windows(trimmed, last_only=True).decision(-1)

    def _windows(self, history: ArrivalHistory, *, last_only: bool) -> Windows:
        import numpy as np

        from nfaas.keepalive.seasonality import detect_period, level, seasonal_profile

        cfg = self.config
        x = history.counts.astype(np.float64)
        minutes = np.flatnonzero(x).astype(np.int64)
        if last_only:
            minutes = minutes[-1:]
        n = len(minutes)
        out = _Rows.empty(n)
        lvl = level(x, cfg.level_alpha)
        edges = [0, *refit_points(len(x)), len(x)]
        profiles: dict[int, NDArray[np.float64]] = {}
        for start, stop in itertools.pairwise(edges):
            rows = np.flatnonzero((minutes >= start) & (minutes < stop))
            if not len(rows):
                continue
            if start == 0:
                # Before the first fit there is no model: the documented default holds.
                out.keepalive[rows] = float(self.horizon)
                continue
            season = detect_period(x[:start], cfg.min_strength)
            if season.strength > 0 and season.period not in profiles:
                profiles[season.period] = seasonal_profile(x, season.period, cfg.seasonal_gamma)
            profile = profiles.get(season.period) if season.strength > 0 else None
            for chunk in np.array_split(rows, max(1, len(rows) // _CHUNK_ROWS + 1)):
                if len(chunk):
                    self._decide(out, chunk, minutes[chunk], lvl, profile, season, history)
        return Windows(minutes, out.prewarm, out.keepalive, out.ready, out.mode, MODES)

    def _decide(
        self,
        out: _Rows,
        rows: NDArray[np.int64],
        t: NDArray[np.int64],
        lvl: NDArray[np.float64],
        profile: NDArray[np.float64] | None,
        season: Seasonality,
        history: ArrivalHistory,
    ) -> None:
        import numpy as np

        cfg = self.config
        h = np.arange(1, self.horizon + 1)
        rate = np.repeat(lvl[t][:, None], len(h), axis=1)
        seasonal = profile is not None
        if profile is not None:
            idx = t[:, None] + 1 + (h[None, :] - 1) % season.period
            # A blend with the level would spread mass over the quiet part of the cycle,
            # where a periodic function's events do not come: the profile alone decides.
            rate = profile[idx]
        cum = np.cumsum(rate, axis=1)
        need_head = -np.log1p(-cfg.head_quantile)
        need_tail = -np.log1p(-cfg.tail_quantile)
        head_hit = cum >= need_head
        has_head = head_hit.any(axis=1)
        head = head_hit.argmax(axis=1) + 1.0
        tail_hit = cum >= need_tail
        tail = np.where(tail_hit.any(axis=1), tail_hit.argmax(axis=1) + 1.0, float(len(h)))
        # The quantile minute h means "the next event comes in minute t + h": an idle time
        # of h, the same unit as the hybrid policy's.
        pre = np.floor(np.round(head * (1.0 - cfg.margin), 6))
        pre = np.where(head <= 1.0, 0.0, pre)
        end = np.maximum(np.ceil(np.round(tail * (1.0 + cfg.margin), 6)), pre + 1.0)
        peak = rate.max(axis=1)
        ready = np.maximum(1, np.ceil(peak * history.duration_s / 60.0)).astype(np.int64)
        out.prewarm[rows] = np.where(has_head, pre, 0.0)
        out.keepalive[rows] = np.where(has_head, end - pre, 0.0)
        out.ready[rows] = ready
        out.mode[rows] = np.where(has_head, 2 if seasonal else 1, 3)


@dataclass
class _Rows:
    prewarm: NDArray[np.float64]
    keepalive: NDArray[np.float64]
    ready: NDArray[np.int64]
    mode: NDArray[np.int8]

    @classmethod
    def empty(cls, n: int) -> _Rows:
        import numpy as np

        return cls(np.zeros(n), np.zeros(n), np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int8))
