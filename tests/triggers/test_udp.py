"""UDP sources: closing releases the port, in-flight datagrams get a grace, every drop counts."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from nfaas.sandboxes.base import Event
from nfaas.telemetry.metrics import Telemetry
from nfaas.triggers.udp import UdpSource
from tests.triggers.conftest import HOST, StubDispatch, dropped, free_port, udp, udp_ask, until

pytestmark = pytest.mark.timeout(20)

#: the largest UDP payload over IPv4
MAX_DATAGRAM = 65_507


async def started(dispatch: StubDispatch, telemetry: Telemetry) -> tuple[UdpSource, int]:
    port = free_port()
    source = UdpSource(udp("app-a", port), dispatch, telemetry, HOST)
    await source.start()
    return source, port


async def test_aclose_returns_once_the_port_can_be_bound_again(telemetry: Telemetry) -> None:
    source, port = await started(StubDispatch(), telemetry)
    assert await udp_ask(port, b"ping") == b"ping"
    await source.aclose()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind((HOST, port))  # EADDRINUSE if the socket were still open


async def test_in_flight_datagrams_finish_within_the_grace(telemetry: Telemetry) -> None:
    release = asyncio.Event()

    async def slow(event: Event) -> bytes:
        await release.wait()
        return b"done:" + event.body

    dispatch = StubDispatch(slow)
    source, port = await started(dispatch, telemetry)
    asking = asyncio.create_task(udp_ask(port, b"one"))
    await until(lambda: len(dispatch.calls) == 1)
    closing = asyncio.create_task(source.aclose(grace_s=5.0))
    await asyncio.sleep(0.05)
    # Closed to new events at once: a datagram arriving now is dropped, and counted.
    assert await udp_ask(port, b"late", wait=0.2) is None
    assert dropped(telemetry, "udp", "shutdown") == 1
    release.set()
    assert await asyncio.wait_for(asking, 2) == b"done:one"
    await closing
    assert (source.delivered, source.failed) == (1, 1)


async def test_events_past_the_grace_are_cancelled_and_counted(telemetry: Telemetry) -> None:
    async def hangs(event: Event) -> bytes:
        await asyncio.sleep(3600)
        return b""

    dispatch = StubDispatch(hangs)
    source, port = await started(dispatch, telemetry)
    for body in (b"a", b"b"):
        await udp_ask(port, body, wait=0.05)
    await until(lambda: len(dispatch.calls) == 2)
    await source.aclose(grace_s=0.1)
    assert dropped(telemetry, "udp", "shutdown") == 2
    assert source.failed == 2
    await source.aclose()  # idempotent


async def test_a_dispatch_bug_is_logged_counted_and_the_port_keeps_serving(
    telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    def handler(event: Event) -> bytes:
        if event.body == b"bug":
            raise RuntimeError("router bug")
        return event.body

    source, port = await started(StubDispatch(handler), telemetry)
    with caplog.at_level(logging.ERROR, logger="nfaas.triggers.udp"):
        assert await udp_ask(port, b"bug", wait=0.2) is None
    assert dropped(telemetry, "udp", "internal_error") == 1
    assert any(r.exc_info and "router bug" in str(r.exc_info[1]) for r in caplog.records)
    assert await udp_ask(port, b"fine") == b"fine"
    await source.aclose()


async def test_a_result_larger_than_a_datagram_is_a_counted_drop(telemetry: Telemetry) -> None:
    def handler(event: Event) -> bytes:
        return b"x" * (MAX_DATAGRAM + 1) if event.body == b"big" else b"x" * MAX_DATAGRAM

    source, port = await started(StubDispatch(handler), telemetry)
    assert await udp_ask(port, b"big", wait=0.3) is None
    assert dropped(telemetry, "udp", "result_too_large") == 1
    assert dropped(telemetry, "udp", "reply_failed") == 0
    reply = await udp_ask(port, b"fits")
    assert reply is not None and len(reply) == MAX_DATAGRAM
    assert (source.delivered, source.failed) == (1, 1)
    await source.aclose()
