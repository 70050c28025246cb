"""The automatic rollback rule: the new version against the old one, over a window.

EVE025 7.2.5: a provider rolls back "if unexpected errors are present, e.g. more
HTTP failure responses, longer processing time". A rule compares one of those
between the canary and the stable version over the same recent window, so that a
load spike that slows both versions does not roll back the new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


@dataclass(frozen=True, slots=True)
class WindowStats:
    """What one version did in a window: events, errors, durations of the successes."""

    events: int
    errors: int
    durations: tuple[float, ...]

    @property
    def error_rate(self) -> float:
        return self.errors / self.events if self.events else 0.0

    def percentile(self, p: float) -> float | None:
        """The ``p``-th percentile (nearest rank) of the durations, in seconds."""
        if not self.durations:
            return None
        ordered = sorted(self.durations)
        rank = max(1, -(-len(ordered) * p // 100))
        return ordered[int(rank) - 1]


class RollbackRule(BaseModel):
    """When to give the stable version back all the events."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: Literal["error_rate", "duration"] = Field(
        description="error_rate: outcomes other than ok; duration: a percentile of the "
        "time spent on successful events, cold start excluded"
    )
    window_s: float = Field(60.0, gt=0, le=86400, description="how far back to look")
    min_events: int = Field(
        20, ge=1, le=1_000_000, description="events of the new version needed before deciding"
    )
    max_error_rate_increase: float = Field(
        0.05, ge=0, le=1, description="error_rate: tolerated rise over the stable version's rate"
    )
    percentile: float = Field(99.0, gt=0, le=100, description="duration: which percentile")
    max_duration_ratio: float = Field(
        1.5, ge=1, description="duration: tolerated ratio to the stable version's percentile"
    )

    def verdict(self, new: WindowStats, old: WindowStats) -> str | None:
        """Why the new version must go, or None while it holds up (or too little is known)."""
        if new.events < self.min_events:
            return None
        if self.metric == "error_rate":
            if new.error_rate > old.error_rate + self.max_error_rate_increase:
                return (
                    f"error rate {new.error_rate:.1%} over {new.events} events in "
                    f"{self.window_s:g} s, against {old.error_rate:.1%} for the stable version "
                    f"(tolerated rise {self.max_error_rate_increase:.1%})"
                )
            return None
        new_p, old_p = new.percentile(self.percentile), old.percentile(self.percentile)
        if new_p is None or old_p is None or new_p <= old_p * self.max_duration_ratio:
            return None
        return (
            f"p{self.percentile:g} duration {new_p * 1000:.1f} ms in {self.window_s:g} s, against "
            f"{old_p * 1000:.1f} ms for the stable version (tolerated ratio "
            f"{self.max_duration_ratio:g})"
        )
