"""Trigger bindings and the interface of a trigger source (EVE025 7.2.2).

A binding maps an event source (an HTTP route, a UDP or TCP port, a timer) to
a function; the "supporting serverless" service listens on every bound source
and turns what arrives into events for the router.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol

from nfaas.packages.descriptors import HttpTrigger, TcpTrigger, TimerTrigger, UdpTrigger
from nfaas.sandboxes.base import Event, Result

TriggerSpec = HttpTrigger | UdpTrigger | TcpTrigger | TimerTrigger


@dataclass(frozen=True, slots=True)
class TriggerBinding:
    app: str
    function: str
    spec: TriggerSpec
    #: the position of the trigger in the descriptor (two timers of one function differ by it)
    index: int = 0

    @property
    def key(self) -> tuple[Any, ...]:
        """What two applications may not both hold."""
        spec = self.spec
        if isinstance(spec, UdpTrigger | TcpTrigger):
            return (spec.type, spec.port)
        if isinstance(spec, HttpTrigger):
            return ("http", spec.path)
        return ("timer", self.app, self.function, self.index)

    def describe(self) -> str:
        spec = self.spec
        if isinstance(spec, UdpTrigger | TcpTrigger):
            return f"{spec.type} port {spec.port}"
        if isinstance(spec, HttpTrigger):
            return f"http {spec.path or f'/fn/{self.app}/{self.function}'}"
        return f"timer every {spec.interval_s:g} s"


class Dispatch(Protocol):
    """The router as a trigger source sees it."""

    def __call__(
        self, app: str, function: str, event: Event, *, arrival: float | None = None
    ) -> Awaitable[Result]: ...


class SourceState(enum.Enum):
    STARTING = "starting"
    LISTENING = "listening"
    FAILED = "failed"
    CLOSED = "closed"


class TriggerSource(ABC):
    """One listener (a socket, a timer) delivering events for one binding."""

    def __init__(self, binding: TriggerBinding) -> None:
        self.binding = binding
        self.state = SourceState.STARTING
        self.error: str | None = None
        self.delivered = 0
        self.failed = 0

    @abstractmethod
    async def start(self) -> None:
        """Begin listening; raises OSError (e.g. address in use) when it cannot."""

    @abstractmethod
    async def aclose(self) -> None:
        """Stop listening and finish or cancel what is in flight; idempotent."""

    def snapshot(self) -> dict[str, Any]:
        return {
            "app": self.binding.app,
            "function": self.binding.function,
            "type": self.binding.spec.type,
            "binding": self.binding.describe(),
            "state": self.state.value,
            "error": self.error,
            "delivered": self.delivered,
            "failed": self.failed,
        }
