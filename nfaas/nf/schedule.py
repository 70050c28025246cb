"""Event scheduling: timers and periodic work of one NF instance.

An NF's clock is the one its instance is given (``time.monotonic`` by
default, a fake in tests), and its timers run between batches: on every
``NFInstance.process`` and on ``NFInstance.tick`` (which a platform timer
trigger calls). So timer callbacks never run concurrently with packet
processing and need no locks. A periodic task that fell behind runs once, not
once per missed period (work such as expiring flows only needs the latest).
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

TimerCallback = Callable[[Any], None]


@dataclass(order=True)
class _Timer:
    due: float
    serial: int
    name: str = field(compare=False)
    callback: TimerCallback = field(compare=False)
    every: float | None = field(compare=False, default=None)


class Scheduler:
    def __init__(self) -> None:
        self._heap: list[_Timer] = []
        self._serial = itertools.count()
        self.runs: dict[str, int] = {}
        self.errors: dict[str, int] = {}

    def every(
        self, interval_s: float, callback: TimerCallback, *, now: float, name: str = ""
    ) -> None:
        """Run ``callback(context)`` every ``interval_s``, the first time one interval from ``now``."""
        if interval_s <= 0:
            raise ValueError("a period must be positive")
        name = name or getattr(callback, "__name__", "timer")
        heapq.heappush(
            self._heap, _Timer(now + interval_s, next(self._serial), name, callback, interval_s)
        )

    def after(self, delay_s: float, callback: TimerCallback, *, now: float, name: str = "") -> None:
        """Run ``callback(context)`` once, ``delay_s`` after ``now``."""
        name = name or getattr(callback, "__name__", "timer")
        heapq.heappush(
            self._heap, _Timer(now + max(0.0, delay_s), next(self._serial), name, callback)
        )

    def next_due(self) -> float | None:
        return self._heap[0].due if self._heap else None

    def run_due(self, now: float, context: Any) -> int:
        """Run every timer due by ``now``; a callback that raises is counted and logged."""
        ran = 0
        while self._heap and self._heap[0].due <= now:
            timer = heapq.heappop(self._heap)
            ran += 1
            self.runs[timer.name] = self.runs.get(timer.name, 0) + 1
            try:
                timer.callback(context)
            except Exception:
                self.errors[timer.name] = self.errors.get(timer.name, 0) + 1
                log.exception("NF timer %s raised", timer.name)
            if timer.every is not None:
                # behind schedule: skip to the next period after now, not one per missed period
                missed = max(0, int((now - timer.due) // timer.every))
                timer.due += timer.every * (missed + 1)
                heapq.heappush(self._heap, timer)
        return ran
