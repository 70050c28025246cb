"""The next idle time of a function whose idle times are mostly out of the histogram's range.

"Serverless in the Wild" (4.2) fits an ARIMA model to such a function's idle
times. Those functions are rare and their series short (a few idle times a
day), so an AR(1) model, ARIMA(1,0,0), fitted by statsmodels' Yule-Walker
estimator on the last ``WINDOW`` idle times, keeps the idea at a fraction of
the cost of a full ARIMA fit per invocation.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

#: idle times a forecast looks back on
WINDOW = 64
#: fewer than this and the mean of what was seen is the forecast
MIN_FIT = 4


def forecast_idle_times(gaps: NDArray[np.float64], rows: NDArray[np.int64]) -> NDArray[np.float64]:
    """For each row ``i``, the idle time expected after invocation ``i`` from ``gaps[:i]``."""
    out = np.empty(len(rows), dtype=np.float64)
    for k, i in enumerate(rows):
        out[k] = _next_idle_time(gaps[max(0, int(i) - WINDOW) : int(i)])
    return np.maximum(out, 1.0)


def _next_idle_time(series: NDArray[np.float64]) -> float:
    if len(series) == 0:
        return 1.0
    mean = float(series.mean())
    if len(series) < MIN_FIT or float(series.std()) == 0.0:
        return mean
    from statsmodels.regression.linear_model import yule_walker

    with warnings.catch_warnings():
        # statsmodels announces a change of yule_walker's return type; we unpack both.
        warnings.simplefilter("ignore", FutureWarning)
        rho, _sigma = yule_walker(series, order=1, method="mle")[:2]
    phi = float(np.clip(rho[0], -0.99, 0.99))
    return mean + phi * (float(series[-1]) - mean)
