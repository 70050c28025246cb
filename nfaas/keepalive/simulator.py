"""Replay a trace under a policy: cold starts and wasted memory-time, as the paper counts them.

The model is that of "Serverless in the Wild" (section 5.1), at the trace's
1-minute resolution: after each invocation minute the policy gives a window
(pre-warm ``p``, keep-alive ``k``); the next invocation minute, ``g``
minutes later, is warm if ``p <= g <= p + k`` and cold otherwise (the first
one always is); the other invocations of a minute are warm. Wasted
memory-time is what is loaded without running: ``ready`` instances of the
unit's memory for ``min(g, p + k) - p`` minutes after each invocation
(the time after the last one counts up to the trace's end). Concurrency
within a minute is not modelled, as in the paper.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from nfaas.keepalive.base import ArrivalHistory, KeepAlivePolicy, Windows
from nfaas.keepalive.registry import make_policy
from nfaas.keepalive.trace import Trace


@dataclass(frozen=True)
class PolicyResult:
    policy: str
    parameters: dict[str, float]
    units: int
    days: float
    invocations: int
    cold_starts: int
    #: cold starts over invocations, whole trace
    cold_share: float
    #: idle loaded memory x time, GB-hours
    wasted_gb_hours: float
    #: cold-start share of the unit at the 75th / 99th percentile of units
    cold_share_p75: float
    cold_share_p99: float
    #: decisions taken by each rule of the policy
    modes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def unit_days_per_second(self) -> float:
        return self.units * self.days / self.seconds if self.seconds > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"unit_days_per_second": round(self.unit_days_per_second, 1)}


@dataclass(frozen=True, slots=True)
class UnitOutcome:
    invocations: int
    cold_starts: int
    #: MB x minutes
    wasted_mb_min: float


def replay(counts: np.ndarray[Any, Any], windows: Windows, memory_mb: float) -> UnitOutcome:
    """One unit's cold starts and wasted memory-time under its decisions."""
    t = windows.minutes
    if len(t) == 0:
        return UnitOutcome(0, 0, 0.0)
    idle = np.diff(np.r_[t, len(counts)]).astype(np.float64)
    p, k = windows.prewarm, windows.keepalive
    warm = (idle[:-1] >= p[:-1]) & (idle[:-1] <= p[:-1] + k[:-1])
    loaded = np.clip(np.minimum(idle, p + k) - p, 0.0, None)
    return UnitOutcome(
        invocations=int(counts.sum(dtype=np.int64)),
        cold_starts=1 + int(np.count_nonzero(~warm)),
        wasted_mb_min=float(np.dot(loaded, windows.ready) * memory_mb),
    )


def simulate(trace: Trace, policy: KeepAlivePolicy) -> PolicyResult:
    """Replay every unit of ``trace`` under ``policy``."""
    started = time.perf_counter()
    invocations = np.zeros(trace.units, dtype=np.int64)
    cold = np.zeros(trace.units, dtype=np.int64)
    wasted = 0.0
    modes: dict[str, int] = {}
    for i in range(trace.units):
        row = trace.counts[i]
        if not row.any():
            continue
        windows = policy.windows(ArrivalHistory(row, float(trace.duration_s[i])))
        outcome = replay(row, windows, float(trace.memory_mb[i]))
        invocations[i], cold[i] = outcome.invocations, outcome.cold_starts
        wasted += outcome.wasted_mb_min
        for code, count in zip(*np.unique(windows.mode, return_counts=True), strict=True):
            name = windows.modes[int(code)]
            modes[name] = modes.get(name, 0) + int(count)
    active = invocations > 0
    shares = cold[active] / invocations[active]
    total = int(invocations.sum())
    return PolicyResult(
        policy=policy.name,
        parameters=policy.parameters(),
        units=trace.units,
        days=trace.days,
        invocations=total,
        cold_starts=int(cold.sum()),
        cold_share=float(cold.sum() / total) if total else 0.0,
        wasted_gb_hours=wasted / 1024.0 / 60.0,
        cold_share_p75=float(np.percentile(shares, 75)) if len(shares) else 0.0,
        cold_share_p99=float(np.percentile(shares, 99)) if len(shares) else 0.0,
        modes=modes,
        seconds=time.perf_counter() - started,
    )


def sweep(
    trace: Trace, name: str, values: Iterable[float] | None = None, **fixed: float
) -> list[PolicyResult]:
    """One result per value of the policy's sweep parameter: a trade-off curve."""
    cls_policy = make_policy(name, fixed)
    param, defaults = cls_policy.sweep
    if not param:
        return [simulate(trace, cls_policy)]
    return [
        simulate(trace, make_policy(name, {**fixed, param: value}))
        for value in (defaults if values is None else values)
    ]
