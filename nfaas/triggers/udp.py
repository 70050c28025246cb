"""UDP port triggers: each datagram is an event (EVE025 Fig. 7.2.2.2-2: port 9001 -> function 1).

The function's result goes back to the sender as one datagram (unless the
binding says ``reply: false``). A datagram that cannot be delivered gets no
reply, as UDP would, but nothing is dropped silently: it is counted as
``nfaas_trigger_dropped_total{trigger="udp", reason=...}`` with one of

``overloaded``
    the port already holds ``MAX_IN_FLIGHT`` datagrams, or function management
    refused the event (queue full or deadline passed);
``shutdown``
    the datagram arrived while the listener was closing, or its invocation was
    still running when the grace period of ``aclose`` ran out;
``internal_error``
    dispatching raised something other than an ``NfaasError`` (a bug; logged
    with its traceback);
``result_too_large``
    the function ran, but its result does not fit in one datagram
    (65,507 bytes over IPv4, 65,527 over IPv6);
``reply_failed``
    the operating system refused to send the reply.

The router adds ``too_large`` and ``no_function``; a function that fails is an
invocation outcome (``nfaas_invocations_total``), not a drop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

from nfaas.errors import NfaasError, Overloaded
from nfaas.packages.descriptors import UdpTrigger
from nfaas.sandboxes.base import Event
from nfaas.telemetry.metrics import Telemetry
from nfaas.triggers.base import Dispatch, SourceState, TriggerBinding, TriggerSource, drain

log = logging.getLogger(__name__)

#: datagrams handled at once per port; past it, datagrams are dropped and counted
MAX_IN_FLIGHT = 4096

#: the largest UDP payload: 65,535 less the IP (20 for IPv4, none for IPv6) and UDP (8) headers
MAX_DATAGRAM_V4 = 65_507
MAX_DATAGRAM_V6 = 65_527


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, source: UdpSource) -> None:
        self.source = source
        #: set once the transport has closed its socket, so that the port can be bound again
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.source.received(data, addr)

    def error_received(self, exc: Exception) -> None:
        # The socket is not connected, so what lands here is a send that failed: a reply.
        self.source.reply_failed(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._protocol: _Protocol | None = None
        self._max_reply = MAX_DATAGRAM_V4
        self._warned_too_large = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self._host, self._spec.port)
        )
        self._transport, self._protocol = transport, protocol
        self._loop = loop
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family == socket.AF_INET6:
            self._max_reply = MAX_DATAGRAM_V6
        self.state = SourceState.LISTENING

    def _drop(self, reason: str) -> None:
        self.failed += 1
        self._telemetry.dropped("udp", reason)

    def received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.state is SourceState.CLOSED:  # (a datagram may come before start() returns)
            self._drop("shutdown")
            return
        if len(self._tasks) >= MAX_IN_FLIGHT:
            self._drop("overloaded")
            return
        loop = self._loop or asyncio.get_running_loop()
        task = loop.create_task(self._handle(data, addr, time.monotonic()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, data: bytes, addr: tuple[str, int], arrival: float) -> None:
        event = Event("udp", data, {"peer": f"{addr[0]}:{addr[1]}", "port": self._spec.port})
        b = self.binding
        try:
            result = await self._dispatch(b.app, b.function, event, arrival=arrival)
        except Overloaded:
            self._drop("overloaded")
            return
        except NfaasError as exc:
            # Counted where it happened: by the router (too_large, no_function) or as an
            # invocation outcome by function management.
            self.failed += 1
            log.debug("udp %s from %s: %s", b.describe(), addr, exc.detail)
            return
        except Exception:
            self._drop("internal_error")
            log.exception("udp %s from %s: dispatching the datagram failed", b.describe(), addr)
            return
        if self._spec.reply and result.body:
            if len(result.body) > self._max_reply:
                self._drop("result_too_large")
                # Once per listener: a function that always answers too much would flood the log.
                (log.debug if self._warned_too_large else log.warning)(
                    "udp %s: the result of %s is %d bytes, over the %d a datagram holds; not sent",
                    b.describe(), b.owner, len(result.body), self._max_reply,
                )  # fmt: skip
                self._warned_too_large = True
                return
            self._send(result.body, addr)
        self.delivered += 1

    def _send(self, body: bytes, addr: tuple[str, int]) -> None:
        if self._transport is None or self._transport.is_closing():
            self.reply_failed(ConnectionError("the socket is closed"))
            return
        try:
            self._transport.sendto(body, addr)
        except OSError as exc:
            self.reply_failed(exc)

    def reply_failed(self, exc: Exception) -> None:
        self._telemetry.dropped("udp", "reply_failed")
        log.debug("udp %s: a reply could not be sent: %s", self.binding.describe(), exc)

    def _cancelled(self, task: asyncio.Task[Any]) -> None:
        self._drop("shutdown")

    async def _close(self, grace_s: float) -> None:
        # received() drops (and counts) new datagrams from now on; the socket stays open
        # during the grace period because replies must leave from the bound port.
        try:
            await drain(self._tasks, grace_s, self._cancelled)
        finally:
            if self._transport is not None and self._protocol is not None:
                self._transport.close()
                # The transport closes its socket on a later loop iteration.
                await self._protocol.closed
