"""The live side: each function's arrivals, its policy's decision, as times on the node's clock.

Function management tells the controller of every arrival (``observe``) and
of every finished execution (``completed``); the reaper asks it for the
current window of a function version (``window``) to decide which idle
instances to delete and whether to pre-warm one. A version whose descriptor
names no policy gets no window and keeps the fixed idle period.

Decisions are computed off the event loop (``refresh`` runs the policies in
a worker thread: numpy and statsmodels would otherwise stall events), and
only for units whose history changed; between refreshes a window is the last
decision anchored at the newest arrival, which is what the decision means.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nfaas.keepalive.base import ArrivalHistory, Decision, KeepAlivePolicy
from nfaas.keepalive.registry import make_policy

if TYPE_CHECKING:
    from nfaas.lifecycle.instances import FunctionVersion
    from nfaas.packages.descriptors import KeepAlive

log = logging.getLogger(__name__)

#: minutes of arrivals kept per unit: enough for the forecast's daily refits
HISTORY_MINUTES = 3 * 1440
UnitKey = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KeepWindow:
    """When instances of a function may stay loaded, on the controller's clock (seconds)."""

    policy: str
    decision: Decision
    #: the newest arrival the window is measured from
    anchor: float
    start: float
    end: float

    @property
    def ready(self) -> int:
        return self.decision.ready

    @property
    def prewarm(self) -> bool:
        """Whether an instance is to be loaded at ``start`` (the policy unloads until then)."""
        return self.decision.prewarm_min > 0 and self.decision.keepalive_min > 0

    def holds(self, now: float) -> bool:
        return self.start <= now <= self.end


@dataclass
class _Unit:
    policy: KeepAlivePolicy
    counts: deque[int] = field(default_factory=lambda: deque(maxlen=HISTORY_MINUTES))
    last_minute: int | None = None
    last_arrival: float | None = None
    duration_s: float = 1.0
    decision: Decision | None = None
    #: the minute the decision was computed after: decisions have a minute's resolution,
    #: so a busy function is decided once a minute, not once per reap
    decided_minute: int | None = None
    dirty: bool = False

    def add(self, at: float) -> None:
        minute = int(at // 60)
        if self.last_minute is None:
            self.counts.append(0)
            self.last_minute = minute
        elif minute > self.last_minute:
            self.counts.extend([0] * min(minute - self.last_minute, HISTORY_MINUTES))
            self.last_minute = minute
        back = self.last_minute - minute  # an arrival stamped before the newest one
        if back < len(self.counts):
            self.counts[len(self.counts) - 1 - back] += 1
        self.last_arrival = at if self.last_arrival is None else max(self.last_arrival, at)
        self.dirty = self.dirty or self.decision is None or self.last_minute != self.decided_minute


class KeepAliveController:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._units: dict[tuple[UnitKey, str, tuple[tuple[str, float], ...]], _Unit] = {}
        self._lock = threading.Lock()

    # -- what function management reports ------------------------------------------------

    def observe(self, version: FunctionVersion, at: float | None = None) -> None:
        unit = self._unit(version)
        if unit is not None:
            with self._lock:
                unit.add(self.clock() if at is None else at)

    def completed(self, version: FunctionVersion, seconds: float) -> None:
        unit = self._unit(version)
        if unit is not None:
            unit.duration_s = 0.9 * unit.duration_s + 0.1 * max(seconds, 0.0)

    # -- decisions -------------------------------------------------------------------------

    def window(self, version: FunctionVersion) -> KeepWindow | None:
        """The version's current window, or None when its descriptor names no policy."""
        unit = self._unit(version)
        if unit is None:
            return None
        decision = unit.decision or unit.policy.default()
        anchor = unit.last_arrival if unit.last_arrival is not None else self.clock()
        start = anchor + decision.prewarm_min * 60.0
        return KeepWindow(
            policy=unit.policy.name,
            decision=decision,
            anchor=anchor,
            start=start,
            end=start + decision.keepalive_min * 60.0,
        )

    async def refresh(self) -> None:
        """Recompute the decisions of units with new arrivals, off the event loop."""
        if any(u.dirty for u in self._units.values()):
            await asyncio.to_thread(self.refresh_now)

    def refresh_now(self) -> int:
        """The same, on this thread; how many decisions changed hands."""
        import numpy as np

        done = 0
        for unit in list(self._units.values()):
            with self._lock:
                if not unit.dirty:
                    continue
                unit.dirty = False
                unit.decided_minute = unit.last_minute
                counts = np.fromiter(unit.counts, dtype=np.int64, count=len(unit.counts))
            try:
                unit.decision = unit.policy.decide(ArrivalHistory(counts, unit.duration_s))
            except Exception:  # a policy bug must not stop idle deletion of everyone else
                log.exception("keep-alive policy %s failed; keeping its last decision", unit.policy)
            done += 1
        return done

    def _unit(self, version: FunctionVersion) -> _Unit | None:
        spec = version.descriptor.scaling.keepalive
        if spec is None:
            return None
        key = (_unit_key(version, spec), spec.policy, tuple(sorted(spec.parameters.items())))
        unit = self._units.get(key)
        if unit is None:
            unit = self._units[key] = _Unit(make_policy(spec.policy, spec.parameters))
        return unit

    def units(self) -> Iterator[tuple[UnitKey, str, Decision | None, float | None]]:
        for (key, name, _), unit in list(self._units.items()):
            yield key, name, unit.decision, unit.last_arrival


def _unit_key(version: FunctionVersion, spec: KeepAlive) -> UnitKey:
    # The paper keeps one histogram per application; a function of its own is finer.
    return (version.app,) if spec.scope == "application" else (version.app, version.name)
