"""Fixed keep-alive: every instance stays loaded a fixed time after its last event.

The baseline of the big clouds (10 minutes at AWS Lambda and Azure Functions
in 2019, per "Serverless in the Wild", section 4.1), and what nfaas did
before policies: never pre-warm, keep for a constant time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

from nfaas.keepalive.base import (
    ArrivalHistory,
    Decision,
    KeepAlivePolicy,
    Windows,
    check_range,
    constant_windows,
)

#: a week: longer than any trace replayed here, and than any edge node keeps a function
MAX_KEEP_ALIVE_MIN = 7 * 24 * 60.0


@dataclass(frozen=True, slots=True)
class FixedConfig:
    #: minutes an instance stays loaded after its last event
    keep_alive_min: float = 10.0

    def __post_init__(self) -> None:
        check_range("fixed", "keep_alive_min", self.keep_alive_min, 0.0, MAX_KEEP_ALIVE_MIN)


class FixedKeepAlive(KeepAlivePolicy):
    name: ClassVar[str] = "fixed"
    sweep: ClassVar[tuple[str, tuple[float, ...]]] = (
        "keep_alive_min",
        (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 240.0),
    )

    def __init__(self, config: FixedConfig | None = None) -> None:
        self.config = config or FixedConfig()

    def windows(self, history: ArrivalHistory) -> Windows:
        import numpy as np

        minutes = np.flatnonzero(history.counts).astype(np.int64)
        return constant_windows(minutes, 0.0, self.config.keep_alive_min, self.name)

    def default(self) -> Decision:
        return Decision(0.0, self.config.keep_alive_min, 1, self.name)

    def parameters(self) -> dict[str, float]:
        return asdict(self.config)
