"""Never keep: an instance is deleted as soon as it is idle; every first event of a minute is cold.

The other extreme of the trade-off: no memory is ever held for a function
that is not running, at the price of a cold start per burst.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from nfaas.keepalive.base import (
    ArrivalHistory,
    Decision,
    KeepAlivePolicy,
    Windows,
    constant_windows,
)


@dataclass(frozen=True, slots=True)
class NeverConfig:
    """No parameters."""


class NeverKeep(KeepAlivePolicy):
    name: ClassVar[str] = "never"
    sweep: ClassVar[tuple[str, tuple[float, ...]]] = ("", ())

    def __init__(self, config: NeverConfig | None = None) -> None:
        self.config = config or NeverConfig()

    def windows(self, history: ArrivalHistory) -> Windows:
        import numpy as np

        minutes = np.flatnonzero(history.counts).astype(np.int64)
        return constant_windows(minutes, 0.0, 0.0, self.name)

    def default(self) -> Decision:
        return Decision(0.0, 0.0, 1, self.name)

    def parameters(self) -> dict[str, float]:
        return {}
