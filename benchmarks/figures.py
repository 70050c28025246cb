"""What a benchmark hands back: figures beside their floors and goals, as plain JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from benchmarks.stats import ratio

#: at_most: value <= limit; at_least: value >= limit; over_floor_at_most: value - floor <= limit;
#: ratio_at_most: value / floor <= limit
GoalKind = Literal["at_most", "at_least", "over_floor_at_most", "ratio_at_most"]


@dataclass(frozen=True, slots=True)
class Goal:
    kind: GoalKind
    limit: float
    text: str

    def met(self, value: float, floor: float | None) -> bool | None:
        if math.isnan(value):
            return False
        if self.kind == "at_most":
            return value <= self.limit
        if self.kind == "at_least":
            return value >= self.limit
        if floor is None or math.isnan(floor):
            return None
        if self.kind == "ratio_at_most":
            return floor > 0 and value / floor <= self.limit
        return value - floor <= self.limit

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "limit": self.limit, "text": self.text}


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured quantity (a p50, a throughput), its floor in the same run, and its goal."""

    key: str
    label: str
    unit: str
    value: float
    floor: float | None = None
    goal: Goal | None = None

    @property
    def ratio(self) -> float | None:
        return ratio(self.value, self.floor)

    @property
    def met(self) -> bool | None:
        return None if self.goal is None else self.goal.met(self.value, self.floor)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "unit": self.unit,
            "value": _finite(self.value),
            "floor": _finite(self.floor),
            "ratio": _finite(self.ratio),
            "goal": self.goal.as_dict() if self.goal else None,
            "met": self.met,
        }


@dataclass(slots=True)
class Section:
    """The figures of one benchmark, what they were measured against, and the raw detail."""

    name: str
    title: str
    floor: str
    figures: list[Figure] = field(default_factory=list)
    #: how it was measured (tool, samples, rounds), shown under the table
    method: str = ""
    #: everything else worth keeping: distributions, breakdowns, per-round values
    detail: dict[str, Any] = field(default_factory=dict)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "floor": self.floor,
            "method": self.method,
            "figures": [f.as_dict() for f in self.figures],
            "detail": self.detail,
        }


def _finite(value: float | None) -> float | None:
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return value
