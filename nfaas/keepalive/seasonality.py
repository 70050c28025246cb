"""Seasonal exponential smoothing of per-minute arrivals, for the forecasting policy.

Two estimates per minute, both causal and computed for a whole series at
once with linear filters (scipy's ``lfilter``), so that fitting is done once
per refit, not once per invocation:

- the *level*: an exponentially weighted mean of the last minutes' counts;
- the *seasonal profile*: for a period ``P``, an exponentially weighted mean
  of the counts at the same phase in earlier cycles (Holt-Winters' seasonal
  term, without trend), so the estimate for minute ``u`` uses minutes
  ``u - P, u - 2P, ...`` only.

The period is found from the autocorrelation of the history (statsmodels'
``acf``), among the divisors of a day: timers fire every 1, 5, 15, 60 minutes,
batch jobs every few hours, people follow the day.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

DAY_MIN = 1440
#: periods looked for: the divisors of a day from 2 minutes up
CANDIDATE_PERIODS = tuple(p for p in range(2, DAY_MIN + 1) if DAY_MIN % p == 0)


@dataclass(frozen=True, slots=True)
class Seasonality:
    period: int
    #: autocorrelation at that period, in [0, 1]; 0: no period found
    strength: float


NONE = Seasonality(period=DAY_MIN, strength=0.0)


def detect_period(counts: NDArray[np.float64], min_strength: float) -> Seasonality:
    """The divisor of a day at which ``counts`` repeats most clearly, if it does.

    A period shows as a peak of the autocorrelation: high at lag ``P`` and
    low at ``P/2``. Comparing the two keeps a slowly varying rate (high
    autocorrelation at every short lag) from passing for a 2-minute timer,
    and of the multiples of a timer's period (all equally high) the shortest
    wins, since it learns fastest: one cycle of evidence per ``P`` minutes.
    """
    n = len(counts)
    max_lag = min(DAY_MIN, n // 2)
    if max_lag < CANDIDATE_PERIODS[0] or float(counts.std()) == 0.0:
        return NONE
    from statsmodels.tsa.stattools import acf

    corr = np.nan_to_num(acf(counts, nlags=max_lag, fft=True, missing="none"), nan=0.0)
    periods = np.array([p for p in CANDIDATE_PERIODS if p <= max_lag])
    strength = corr[periods]
    contrast = strength - corr[periods // 2]
    ok = (strength >= min_strength) & (contrast >= min_strength)
    if not ok.any():
        return NONE
    best = float(contrast[ok].max())
    pick = int(np.flatnonzero(ok & (contrast >= 0.95 * best))[0])
    return Seasonality(period=int(periods[pick]), strength=float(min(strength[pick], 1.0)))


def level(counts: NDArray[np.float64], alpha: float) -> NDArray[np.float64]:
    """Exponentially weighted mean of the counts up to and including each minute."""
    from scipy.signal import lfilter

    num = lfilter([alpha], [1.0, alpha - 1.0], counts)
    den = lfilter([alpha], [1.0, alpha - 1.0], np.ones_like(counts))
    return np.asarray(num / den, dtype=np.float64)


def seasonal_profile(counts: NDArray[np.float64], period: int, gamma: float) -> NDArray[np.float64]:
    """For each minute ``u`` in ``[0, len + period)``, the mean count at its phase before ``u``.

    Minutes with no earlier cycle get 0. Extending ``period`` minutes past the
    end lets a forecast made at the last minute read one whole cycle ahead.
    """
    from scipy.signal import lfilter

    padded = np.r_[counts, np.zeros(period)]
    seen = np.r_[np.ones_like(counts), np.zeros(period)]
    b = np.zeros(period + 1)
    b[period] = gamma
    a = np.zeros(period + 1)
    a[0], a[period] = 1.0, gamma - 1.0
    num = lfilter(b, a, padded)
    den = lfilter(b, a, seen)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return np.asarray(out, dtype=np.float64)
