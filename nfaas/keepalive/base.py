"""What a keep-alive policy is: from a function's arrivals, a loading window after each one.

The shape of a decision is that of Shahrad et al., "Serverless in the Wild"
(USENIX ATC 2020), section 4: after an invocation ends, the policy gives a
*pre-warm window* (how long to wait, unloaded, before loading an instance
again; 0 keeps the instance loaded) and a *keep-alive window* (how long the
instance then stays loaded without an event), plus how many instances to hold
ready in it. Time is in minutes, the resolution of the Azure trace, and a
history is the function's invocations per minute, oldest first.

One method, ``windows``, gives the decisions after *every* invocation minute
of a history at once (so the simulator replays days in a few array
operations); the live platform asks for the last one (``decide``). A
decision after minute ``t`` may use the counts up to ``t`` only.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from nfaas.errors import InvalidPolicy

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

C = TypeVar("C")


@dataclass(frozen=True, slots=True)
class ArrivalHistory:
    """One function's (or application's) invocations per minute; the last minute is now."""

    counts: NDArray[np.int64]
    #: mean execution time, for how many instances a rate needs at once
    duration_s: float = 1.0


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do after one invocation: wait ``prewarm_min``, then keep ``ready`` loaded."""

    prewarm_min: float
    keepalive_min: float
    ready: int
    #: which rule of the policy decided (e.g. ``histogram``, ``default``)
    mode: str


@dataclass(frozen=True)
class Windows:
    """The decision after each invocation minute of a history, as parallel arrays."""

    minutes: NDArray[np.int64]
    prewarm: NDArray[np.float64]
    keepalive: NDArray[np.float64]
    ready: NDArray[np.int64]
    #: index into ``modes`` per row
    mode: NDArray[np.int8]
    modes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.minutes)

    def decision(self, row: int = -1) -> Decision:
        return Decision(
            prewarm_min=float(self.prewarm[row]),
            keepalive_min=float(self.keepalive[row]),
            ready=int(self.ready[row]),
            mode=self.modes[int(self.mode[row])],
        )


def constant_windows(
    minutes: NDArray[np.int64], prewarm: float, keepalive: float, mode: str
) -> Windows:
    """The same decision after every invocation (the fixed policies)."""
    import numpy as np

    n = len(minutes)
    return Windows(
        minutes=minutes,
        prewarm=np.full(n, float(prewarm)),
        keepalive=np.full(n, float(keepalive)),
        ready=np.ones(n, dtype=np.int64),
        mode=np.zeros(n, dtype=np.int8),
        modes=(mode,),
    )


class KeepAlivePolicy(abc.ABC):
    """Decides, per function, when to pre-warm, how long to keep idle, how many to hold."""

    #: the name it is registered under
    name: ClassVar[str]
    #: the parameter a trade-off curve sweeps, and the values it takes by default
    sweep: ClassVar[tuple[str, tuple[float, ...]]]

    @abc.abstractmethod
    def windows(self, history: ArrivalHistory) -> Windows:
        """The decision after every invocation minute of ``history``, causally."""

    @abc.abstractmethod
    def default(self) -> Decision:
        """The documented decision for a function with no history yet."""

    @abc.abstractmethod
    def parameters(self) -> dict[str, float]:
        """The policy's parameters, for reports and the API."""

    def decide(self, history: ArrivalHistory) -> Decision:
        """The decision after the last invocation of ``history``, or the default."""
        import numpy as np

        last = np.flatnonzero(history.counts)
        if len(last) == 0:
            return self.default()
        # Only the history up to the last invocation matters for its decision.
        trimmed = ArrivalHistory(history.counts[: int(last[-1]) + 1], history.duration_s)
        return self.windows(trimmed).decision(-1)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v:g}" for k, v in self.parameters().items())
        return f"{type(self).__name__}({params})"


def parse_config(cls: type[C], params: Mapping[str, Any], policy: str) -> C:
    """A policy's typed config from loose ``name -> number`` parameters, with precise errors."""
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(params) - known)
    if unknown:
        raise InvalidPolicy(
            f"policy {policy!r} has no parameter {', '.join(map(repr, unknown))} "
            f"(it has: {', '.join(sorted(known)) or 'none'})"
        )
    values: dict[str, float] = {}
    for key, raw in params.items():
        if isinstance(raw, bool):
            raise InvalidPolicy(f"policy {policy!r}: {key} must be a number, not {raw!r}")
        try:
            values[key] = float(raw)
        except (TypeError, ValueError):
            raise InvalidPolicy(f"policy {policy!r}: {key} must be a number, not {raw!r}") from None
    return cls(**values)


def check_range(
    policy: str, name: str, value: float, low: float, high: float, *, low_open: bool = False
) -> None:
    """Raise ``InvalidPolicy`` naming the parameter, its value and its range."""
    below = value <= low if low_open else value < low
    if value != value or below or value > high:  # NaN fails too
        bracket = "(" if low_open else "["
        raise InvalidPolicy(
            f"policy {policy!r}: {name} must be in {bracket}{low:g}, {high:g}], not {value:g}"
        )
