"""Recent outcomes of the versions under a rollback rule, on a clock the caller gives.

Function management records every invocation in ``Telemetry``; this keeps the
outcomes of the watched versions only (a dict lookup for the others), bounded
per version, with the time they were recorded, so a rule can look at a window.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from nfaas.canary.rules import WindowStats

VersionKey = tuple[str, str, str]
Clock = Callable[[], float]

#: (when, ok, duration of a success)
_Sample = tuple[float, bool, float | None]


class OutcomeWindows:
    def __init__(self, clock: Clock, max_samples: int = 20_000) -> None:
        self._clock = clock
        self._max = max_samples
        self._samples: dict[VersionKey, deque[_Sample]] = {}

    def watch(self, keys: set[VersionKey]) -> None:
        """Keep outcomes of ``keys`` from now on, and forget the versions not among them."""
        for key in [k for k in self._samples if k not in keys]:
            del self._samples[key]
        for key in keys:
            self._samples.setdefault(key, deque(maxlen=self._max))

    def watched(self) -> set[VersionKey]:
        return set(self._samples)

    def record(self, key: VersionKey, outcome: str, duration: float | None) -> None:
        """A ``Telemetry`` observer: one invocation's outcome."""
        samples = self._samples.get(key)
        if samples is not None:
            ok = outcome == "ok"
            samples.append((self._clock(), ok, duration if ok else None))

    def stats(self, key: VersionKey, window_s: float) -> WindowStats:
        since = self._clock() - window_s
        events = errors = 0
        durations: list[float] = []
        for at, ok, duration in reversed(self._samples.get(key) or ()):
            if at < since:
                break
            events += 1
            if not ok:
                errors += 1
            elif duration is not None:
                durations.append(duration)
        return WindowStats(events, errors, tuple(durations))
