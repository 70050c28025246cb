"""Synthetic traces with the published shape of the Azure Functions 2019 trace.

"Serverless in the Wild" (section 3) finds: popularity spans eight orders of
magnitude (a few functions take most invocations, most are invoked rarely);
timers are common and strictly periodic; many functions follow the day; some
come in bursts (queues, events); memory is around 100-200 MB with a long
tail; most executions take about a second. The generator draws each
function's kind and parameters from such distributions, seeded, so that a
test or a benchmark replays the same trace every time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from nfaas.errors import InvalidRequest
from nfaas.keepalive.trace import MINUTES_PER_DAY, Trace

if TYPE_CHECKING:
    from numpy.typing import NDArray

KINDS = ("http", "timer", "bursty", "batch", "rare")
#: close to the trigger mix of the Azure trace (HTTP 55 %, timers 16 %, queues and events)
DEFAULT_MIX = {"http": 0.45, "timer": 0.2, "bursty": 0.15, "batch": 0.1, "rare": 0.1}
#: a trace where most functions keep a clock: the forecasting policy's home ground
PERIODIC_MIX = {"http": 0.2, "timer": 0.3, "bursty": 0.0, "batch": 0.5, "rare": 0.0}
TIMER_PERIODS = (1, 5, 10, 15, 30, 60, 120, 360, 720, 1440)
TIMER_WEIGHTS = (0.1, 0.2, 0.1, 0.15, 0.1, 0.15, 0.05, 0.05, 0.05, 0.05)
BATCH_PERIODS = (60, 120, 180, 240, 360, 720, 1440)


@dataclass(frozen=True)
class SyntheticConfig:
    functions: int = 200
    days: float = 1.0
    seed: int = 0
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    #: strength of the day cycle of http functions, 0 (flat) to 1 (silent at night)
    diurnal: float = 0.6

    def __post_init__(self) -> None:
        if not 1 <= self.functions <= 1_000_000:
            raise InvalidRequest(f"functions must be in [1, 1000000], not {self.functions}")
        if not 1 / MINUTES_PER_DAY <= self.days <= 60:
            raise InvalidRequest(f"days must be in [1 minute, 60 days], not {self.days:g}")
        unknown = set(self.mix) - set(KINDS)
        if unknown or not self.mix or min(self.mix.values()) < 0 or sum(self.mix.values()) <= 0:
            raise InvalidRequest(f"mix must give non-negative weights to {', '.join(KINDS)}")
        if not 0 <= self.diurnal <= 1:
            raise InvalidRequest(f"diurnal must be in [0, 1], not {self.diurnal:g}")


def synthetic_trace(config: SyntheticConfig) -> Trace:
    """A reproducible trace: the same config gives the same counts."""
    rng = np.random.default_rng(config.seed)
    n, minutes = config.functions, round(config.days * MINUTES_PER_DAY)
    weights = np.array([config.mix.get(k, 0.0) for k in KINDS])
    kinds = rng.choice(len(KINDS), size=n, p=weights / weights.sum())
    counts = np.zeros((n, minutes), dtype=np.int32)
    makers = {"http": _http, "timer": _timer, "bursty": _bursty, "batch": _batch, "rare": _rare}
    for k, kind in enumerate(KINDS):
        rows = np.flatnonzero(kinds == k)
        if len(rows):
            counts[rows] = makers[kind](rng, len(rows), minutes, config.diurnal)
    memory = np.clip(rng.lognormal(np.log(150.0), 0.6, n), 32.0, 2048.0).round()
    duration = np.clip(rng.lognormal(np.log(0.8), 1.2, n), 0.005, 600.0)
    return Trace(
        names=tuple(f"app-{i // 3}/{KINDS[kinds[i]]}-{i}" for i in range(n)),
        counts=counts,
        memory_mb=memory,
        duration_s=duration,
        kinds=tuple(KINDS[k] for k in kinds),
    )


def _diurnal(
    rng: np.random.Generator, n: int, minutes: int, strength: float
) -> NDArray[np.float64]:
    t = np.arange(minutes)[None, :]
    phase = rng.uniform(0, MINUTES_PER_DAY, (n, 1))
    amp = strength * rng.uniform(0.5, 1.0, (n, 1))
    return np.asarray(1.0 + amp * np.sin(2 * np.pi * (t - phase) / MINUTES_PER_DAY))


def _http(rng: np.random.Generator, n: int, minutes: int, diurnal: float) -> NDArray[np.int32]:
    # Heavy-tailed popularity: median one call per ~30 min, a few take thousands a minute.
    base = np.minimum(rng.lognormal(np.log(0.03), 2.5, (n, 1)), 3000.0)
    return rng.poisson(base * _diurnal(rng, n, minutes, diurnal)).astype(np.int32)


def _timer(rng: np.random.Generator, n: int, minutes: int, diurnal: float) -> NDArray[np.int32]:
    periods = rng.choice(TIMER_PERIODS, size=(n, 1), p=TIMER_WEIGHTS)
    phase = rng.integers(0, 1440, (n, 1)) % periods
    t = np.arange(minutes)[None, :]
    ticks = ((t - phase) % periods == 0).astype(np.int32)
    # A timer function sometimes fans out (several invocations per tick).
    fan_out = rng.integers(1, 3, (n, 1), dtype=np.int32)
    return np.asarray(ticks * fan_out, dtype=np.int32)


def _bursty(rng: np.random.Generator, n: int, minutes: int, diurnal: float) -> NDArray[np.int32]:
    out = np.zeros((n, minutes), dtype=np.int32)
    for i in range(n):
        gap = rng.uniform(60, 600)  # mean minutes between bursts
        starts = np.cumsum(rng.exponential(gap, int(minutes / gap * 2) + 2)).astype(np.int64)
        for s in starts[starts < minutes]:
            length = int(rng.geometric(1 / 8))
            rate = rng.lognormal(np.log(5.0), 1.0)
            stop = min(minutes, int(s) + length)
            out[i, s:stop] += rng.poisson(rate, stop - int(s)).astype(np.int32)
    return out


def _batch(rng: np.random.Generator, n: int, minutes: int, diurnal: float) -> NDArray[np.int32]:
    periods = rng.choice(BATCH_PERIODS, size=(n, 1))
    phase = rng.integers(0, 1440, (n, 1)) % periods
    length = rng.integers(1, 8, (n, 1))
    t = np.arange(minutes)[None, :]
    active = (t - phase) % periods < length
    rate = rng.lognormal(np.log(3.0), 1.0, (n, 1))
    return np.asarray(active * np.maximum(rng.poisson(rate, (n, minutes)), 1), dtype=np.int32)


def _rare(rng: np.random.Generator, n: int, minutes: int, diurnal: float) -> NDArray[np.int32]:
    # Once every few hours to once every few days.
    rate = 1.0 / rng.uniform(120, 4 * 1440, (n, 1))
    return rng.poisson(np.broadcast_to(rate, (n, minutes))).astype(np.int32)
