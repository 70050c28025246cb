"""UDP port triggers: each datagram is an event (EVE025 Fig. 7.2.2.2-2: port 9001 -> function 1).

The function's result goes back to the sender as one datagram (unless the
binding says ``reply: false``). A datagram that cannot be delivered (too
large, function overloaded or failing) gets no reply, as UDP would, but is
counted: nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from nfaas.errors import NfaasError, Overloaded
from nfaas.packages.descriptors import UdpTrigger
from nfaas.sandboxes.base import Event
from nfaas.telemetry.metrics import Telemetry
from nfaas.triggers.base import Dispatch, SourceState, TriggerBinding, TriggerSource

log = logging.getLogger(__name__)

#: datagrams handled at once per port; past it, datagrams are dropped and counted
MAX_IN_FLIGHT = 4096


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, source: UdpSource) -> None:
        self.source = source

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.source.received(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp %s: %s", self.source.binding.describe(), exc)


class UdpSource(TriggerSource):
    def __init__(
        self, binding: TriggerBinding, dispatch: Dispatch, telemetry: Telemetry, host: str
    ) -> None:
        super().__init__(binding)
        assert isinstance(binding.spec, UdpTrigger)
        self._spec = binding.spec
        self._dispatch = dispatch
        self._telemetry = telemetry
        self._host = host
        self._transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self._host, self._spec.port)
        )
        self._transport = transport
        self.state = SourceState.LISTENING

    def received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(self._tasks) >= MAX_IN_FLIGHT:
            self.failed += 1
            self._telemetry.dropped("udp", "overloaded")
            return
        task = asyncio.get_running_loop().create_task(self._handle(data, addr, time.monotonic()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, data: bytes, addr: tuple[str, int], arrival: float) -> None:
        event = Event("udp", data, {"peer": f"{addr[0]}:{addr[1]}", "port": self._spec.port})
        b = self.binding
        try:
            result = await self._dispatch(b.app, b.function, event, arrival=arrival)
        except Overloaded:
            self.failed += 1
            self._telemetry.dropped("udp", "overloaded")
            return
        except NfaasError as exc:
            self.failed += 1
            log.debug("udp %s from %s: %s", b.describe(), addr, exc.detail)
            return
        self.delivered += 1
        if self._spec.reply and result.body and self._transport is not None:
            self._transport.sendto(result.body, addr)

    async def aclose(self) -> None:
        if self.state is SourceState.CLOSED:
            return
        self.state = SourceState.CLOSED
        if self._transport is not None:
            self._transport.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)
