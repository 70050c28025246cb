"""An invocation trace: per-minute invocation counts of many functions, with memory and duration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

MINUTES_PER_DAY = 1440


@dataclass(frozen=True)
class Trace:
    """Rows are units (functions, or applications), columns minutes from the trace's start."""

    names: tuple[str, ...]
    counts: NDArray[np.int32]
    #: memory an instance of the unit holds, MB
    memory_mb: NDArray[np.float64]
    #: mean execution time, seconds
    duration_s: NDArray[np.float64]
    #: trigger (Azure) or generator kind (synthetic), per unit
    kinds: tuple[str, ...]

    def __post_init__(self) -> None:
        units = len(self.names)
        if self.counts.ndim != 2 or self.counts.shape[0] != units:
            raise ValueError(f"counts must be {units} x minutes, not {self.counts.shape}")
        if not len(self.memory_mb) == len(self.duration_s) == len(self.kinds) == units:
            raise ValueError("names, memory_mb, duration_s and kinds must have one entry per unit")

    @property
    def units(self) -> int:
        return len(self.names)

    @property
    def minutes(self) -> int:
        return int(self.counts.shape[1])

    @property
    def days(self) -> float:
        return self.minutes / MINUTES_PER_DAY

    @property
    def invocations(self) -> int:
        return int(self.counts.sum(dtype="int64"))

    def select(self, rows: NDArray[np.int64]) -> Trace:
        """The trace of some units only."""
        return Trace(
            names=tuple(self.names[int(i)] for i in rows),
            counts=self.counts[rows],
            memory_mb=self.memory_mb[rows],
            duration_s=self.duration_s[rows],
            kinds=tuple(self.kinds[int(i)] for i in rows),
        )
