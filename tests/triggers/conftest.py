"""Trigger sources over real sockets on 127.0.0.1 and a stub ``Dispatch``: no platform."""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from nfaas.packages.descriptors import (
    FunctionDescriptor,
    HttpTrigger,
    TcpTrigger,
    TimerTrigger,
    UdpTrigger,
)
from nfaas.sandboxes.base import Event, Result
from nfaas.telemetry.metrics import Telemetry
from nfaas.triggers.base import TriggerBinding
from nfaas.triggers.router import HttpRoute, Router
from nfaas.triggers.service import TriggerService

HOST = "127.0.0.1"

Handler = Callable[[Event], bytes | Awaitable[bytes]]


@dataclass
class Call:
    app: str
    function: str
    event: Event
    arrival: float | None


class StubDispatch:
    """The ``Dispatch`` protocol over a handler of the event; records every call."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler: Handler = handler or (lambda event: event.body)
        self.calls: list[Call] = []

    async def __call__(
        self, app: str, function: str, event: Event, *, arrival: float | None = None
    ) -> Result:
        self.calls.append(Call(app, function, event, arrival))
        out = self.handler(event)
        if inspect.isawaitable(out):
            out = await out
        return Result(out)


@dataclass
class StubRouter:
    """What the trigger service uses of the router."""

    dispatch: StubDispatch
    max_event_bytes: int = 1 << 16
    http_routes: dict[str, HttpRoute] = field(default_factory=dict)


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def udp(app: str, port: int, function: str = "fn", *, reply: bool = True) -> TriggerBinding:
    return TriggerBinding(app, function, UdpTrigger(port=port, reply=reply))


def tcp(app: str, port: int, function: str = "fn", framing: str = "line") -> TriggerBinding:
    return TriggerBinding(app, function, TcpTrigger(port=port, framing=framing))  # type: ignore[arg-type]


def timer(app: str, interval_s: float, function: str = "fn") -> TriggerBinding:
    return TriggerBinding(app, function, TimerTrigger(interval_s=interval_s))


def http(app: str, path: str | None, function: str = "fn") -> TriggerBinding:
    return TriggerBinding(app, function, HttpTrigger(path=path))


def descriptor(name: str, app: str, triggers: list[dict[str, Any]]) -> FunctionDescriptor:
    return FunctionDescriptor.model_validate(
        {
            "kind": "ServerlessFunction",
            "name": name,
            "version": "1.0.0",
            "application": app,
            "runtime": {"name": "mock", "version": "1"},
            "handler": name,
            "code": {"path": f"Files/{name}"},
            "triggers": triggers,
        }
    )


async def until(condition: Callable[[], bool], limit: float = 5.0) -> None:
    """Wait for something the test can observe, polling; fail after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def dropped(telemetry: Telemetry, trigger: str, reason: str) -> int:
    return int(telemetry.dropped_counts().get(f"{trigger}:{reason}", 0))


async def udp_ask(port: int, data: bytes, wait: float = 2.0) -> bytes | None:
    """Send one datagram to the port and return the reply, or None if none came in ``wait``."""
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[bytes] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            if not reply.done():
                reply.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=(HOST, port))
    try:
        transport.sendto(data)
        return await asyncio.wait_for(reply, wait)
    except TimeoutError:
        return None
    finally:
        transport.close()


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry()


@pytest.fixture
def dispatch() -> StubDispatch:
    return StubDispatch()


@pytest.fixture
def router(dispatch: StubDispatch) -> StubRouter:
    return StubRouter(dispatch)


@pytest.fixture
async def service(router: StubRouter, telemetry: Telemetry) -> AsyncIterator[TriggerService]:
    svc = TriggerService(cast(Router, router), telemetry, host=HOST)
    yield svc
    await svc.aclose()
