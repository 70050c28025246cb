"""Trigger bindings and the interface of a trigger source (EVE025 7.2.2).

A binding maps an event source (an HTTP route, a UDP or TCP port, a timer) to
a function; the "supporting serverless" service listens on every bound source
and turns what arrives into events for the router.

Every source closes the same way (``TriggerSource.aclose``): it stops accepting
at once, lets the events it holds finish for up to ``grace_s``, then cancels
them, counting each cancelled event as ``telemetry.dropped(<trigger>,
"shutdown")``, and returns only once its socket is released.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from nfaas.packages.descriptors import (
    HttpTrigger,
    MqttTrigger,
    TcpTrigger,
    TimerTrigger,
    UdpTrigger,
)
from nfaas.sandboxes.base import Event, Result

log = logging.getLogger(__name__)

TriggerSpec = HttpTrigger | UdpTrigger | TcpTrigger | TimerTrigger | MqttTrigger


@dataclass(frozen=True, slots=True)
class TriggerBinding:
    app: str
    function: str
    spec: TriggerSpec
    #: the position of the trigger in the descriptor (two timers of one function differ by it)
    index: int = 0

    @property
    def key(self) -> tuple[Any, ...]:
        """What two bindings may not both hold (see ``exclusive``)."""
        spec = self.spec
        if isinstance(spec, UdpTrigger | TcpTrigger):
            return (spec.type, spec.port)
        if isinstance(spec, HttpTrigger):
            return ("http", spec.path or f"/fn/{self.app}/{self.function}")
        # a timer or an MQTT subscription belongs to its function alone
        return (spec.type, self.app, self.function, self.index)

    @property
    def exclusive(self) -> bool:
        """Whether the binding holds something another binding could claim: a port or a route.

        A timer, or the default ``/fn/<app>/<function>`` route, belongs to its function alone.
        """
        spec = self.spec
        return isinstance(spec, UdpTrigger | TcpTrigger) or (
            isinstance(spec, HttpTrigger) and spec.path is not None
        )

    @property
    def owner(self) -> str:
        return f"{self.app}/{self.function}"

    def describe(self) -> str:
        spec = self.spec
        if isinstance(spec, UdpTrigger | TcpTrigger):
            return f"{spec.type} port {spec.port}"
        if isinstance(spec, HttpTrigger):
            return f"http {spec.path or f'/fn/{self.app}/{self.function}'}"
        if isinstance(spec, MqttTrigger):
            return f"mqtt {','.join(spec.topics)} at {spec.broker}"
        return f"timer every {spec.interval_s:g} s"

    def same_as(self, other: TriggerBinding) -> bool:
        """The same function on the same source, wherever the trigger sits in the descriptor."""
        return (self.app, self.function, self.spec) == (other.app, other.function, other.spec)


class Dispatch(Protocol):
    """The router as a trigger source sees it."""

    def __call__(
        self, app: str, function: str, event: Event, *, arrival: float | None = None
    ) -> Awaitable[Result]: ...


class SourceState(enum.Enum):
    STARTING = "starting"
    LISTENING = "listening"
    FAILED = "failed"
    #: no longer accepting; what was in flight may still be finishing (see ``aclose``)
    CLOSED = "closed"


class TriggerSource(ABC):
    """One listener (a socket, a timer) delivering events for one binding."""

    def __init__(self, binding: TriggerBinding) -> None:
        self.binding = binding
        self.state = SourceState.STARTING
        self.error: str | None = None
        self.delivered = 0
        self.failed = 0
        self._closing: asyncio.Future[None] | None = None

    @abstractmethod
    async def start(self) -> None:
        """Begin listening; raises OSError (e.g. address in use) when it cannot."""

    async def aclose(self, grace_s: float = 0.0) -> None:
        """Stop accepting at once, let in-flight events finish for up to ``grace_s``, cancel
        (and count) the rest, release the socket.

        Idempotent: a second call waits for the first. The closing runs in its own task,
        so a caller cancelled while waiting does not leave the socket half closed.
        """
        if self._closing is None:
            self.state = SourceState.CLOSED
            self._closing = asyncio.ensure_future(self._close_logged(max(0.0, grace_s)))
        await asyncio.shield(self._closing)

    async def _close_logged(self, grace_s: float) -> None:
        try:
            await self._close(grace_s)
        except Exception:
            log.exception(
                "closing trigger %s of %s failed", self.binding.describe(), self.binding.owner
            )

    @abstractmethod
    async def _close(self, grace_s: float) -> None:
        """The work of ``aclose``, run once; ``state`` is already CLOSED."""

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


async def drain(
    tasks: Iterable[asyncio.Task[Any]],
    grace_s: float,
    on_cancel: Callable[[asyncio.Task[Any]], None],
) -> None:
    """Wait up to ``grace_s`` for ``tasks``, then cancel those still running.

    ``on_cancel`` is called for each task about to be cancelled, so that the event it
    held is counted; it runs even when the caller itself is cancelled while waiting.
    """
    pending = {t for t in tasks if not t.done()}
    try:
        if pending and grace_s > 0:
            await asyncio.wait(pending, timeout=grace_s)
    finally:
        late = [t for t in pending if not t.done()]
        for task in late:
            on_cancel(task)
            task.cancel()
        if late:
            await asyncio.gather(*late, return_exceptions=True)
