"""TCP sources: framing of results, connection cap, idle timeout, bugs and shutdown counted."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from nfaas.sandboxes.base import Event
from nfaas.telemetry.metrics import Telemetry
from nfaas.triggers.tcp import TcpSource
from tests.triggers.conftest import HOST, StubDispatch, dropped, free_port, tcp, until

pytestmark = pytest.mark.timeout(20)

Start = Callable[..., Awaitable[tuple[TcpSource, int]]]


@pytest.fixture
async def start(telemetry: Telemetry) -> AsyncIterator[Start]:
    sources: list[TcpSource] = []

    async def make(
        dispatch: StubDispatch, framing: str = "line", **options: float
    ) -> tuple[TcpSource, int]:
        port = free_port(socket.SOCK_STREAM)
        source = TcpSource(tcp("app-a", port, framing=framing), dispatch, telemetry, HOST, 4096,
                           **options)  # type: ignore[arg-type]  # fmt: skip
        await source.start()
        sources.append(source)
        return source, port

    yield make
    for source in sources:
        await source.aclose()


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(HOST, port)


async def test_line_framing_never_rewrites_a_result(start: Start, telemetry: Telemetry) -> None:
    results = {b"two": b"first\nsecond", b"one": b"only line\n", b"plain": b"plain"}
    source, port = await start(StubDispatch(lambda e: results[e.body]))
    reader, writer = await connect(port)
    writer.write(b"two\none\nplain\n")
    assert await reader.readline() == (
        b"ERROR Invalid result: the result contains a newline; use stream framing\n"
    )
    assert await reader.readline() == b"only line\n"  # its own newline ends the line
    assert await reader.readline() == b"plain\n"
    writer.close()
    assert dropped(telemetry, "tcp", "newline_in_result") == 1
    assert (source.delivered, source.failed) == (2, 1)


async def test_stream_framing_sends_a_result_as_it_is(start: Start) -> None:
    _, port = await start(StubDispatch(lambda e: e.body + b"\nand more\n"), framing="stream")
    reader, writer = await connect(port)
    writer.write(b"many\nlines")
    writer.write_eof()
    assert await reader.read() == b"many\nlines\nand more\n"
    writer.close()


async def test_connections_over_the_cap_are_refused_and_counted(
    start: Start, telemetry: Telemetry
) -> None:
    _, port = await start(StubDispatch(), max_connections=2)
    held = [await connect(port) for _ in range(2)]
    for reader, writer in held:  # both served
        writer.write(b"hi\n")
        assert await reader.readline() == b"hi\n"
    reader, writer = await connect(port)
    line = await reader.readline()
    assert line.startswith(b"ERROR Overloaded: 2 connections are open on tcp port")
    assert await reader.read() == b""  # and closed
    writer.close()
    assert dropped(telemetry, "tcp", "too_many_connections") == 1
    held[0][1].close()
    await held[0][1].wait_closed()
    for _ in range(100):  # room again, once the source has seen the connection go
        reader, writer = await connect(port)
        writer.write(b"back\n")
        line = await reader.readline()
        writer.close()
        if line == b"back\n":
            break
        await asyncio.sleep(0.02)
    assert line == b"back\n"
    held[1][1].close()


@pytest.mark.parametrize(
    ("framing", "what"), [("line", b"no complete line"), ("stream", b"no complete stream")]
)
async def test_an_idle_connection_is_closed_and_counted(
    start: Start, telemetry: Telemetry, framing: str, what: bytes
) -> None:
    source, port = await start(StubDispatch(), framing=framing, idle_timeout_s=0.2)
    reader, writer = await connect(port)
    writer.write(b"half a line")
    answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.startswith(b"ERROR Idle timeout: " + what + b" in 0.2 s")
    writer.close()
    assert dropped(telemetry, "tcp", "idle_timeout") == 1
    assert source.failed == 1


async def test_a_dispatch_bug_is_logged_counted_and_answered(
    start: Start, telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    def handler(event: Event) -> bytes:
        if event.body == b"bug":
            raise RuntimeError("router bug")
        return event.body

    _, port = await start(StubDispatch(handler))
    reader, writer = await connect(port)
    with caplog.at_level(logging.ERROR, logger="nfaas.triggers.tcp"):
        writer.write(b"bug\nfine\n")
        assert await reader.readline() == (
            b"ERROR Internal error: the trigger failed; see the platform log\n"
        )
        assert await reader.readline() == b"fine\n"  # the connection keeps serving
    writer.close()
    assert dropped(telemetry, "tcp", "internal_error") == 1
    assert any(r.exc_info and "router bug" in str(r.exc_info[1]) for r in caplog.records)


async def test_aclose_lets_the_line_in_hand_finish_and_ends_idle_connections(
    start: Start, telemetry: Telemetry
) -> None:
    release = asyncio.Event()

    async def slow(event: Event) -> bytes:
        await release.wait()
        return b"done"

    dispatch = StubDispatch(slow)
    source, port = await start(dispatch)
    busy_reader, busy_writer = await connect(port)
    idle_reader, idle_writer = await connect(port)
    busy_writer.write(b"work\n")
    await until(lambda: len(dispatch.calls) == 1)
    closing = asyncio.create_task(source.aclose(grace_s=5.0))
    assert await asyncio.wait_for(idle_reader.read(), 2) == b""  # no event held: closed at once
    with pytest.raises(OSError):
        await connect(port)  # no longer accepting
    release.set()
    assert await busy_reader.readline() == b"done\n"
    assert await busy_reader.read() == b""
    await closing
    assert dropped(telemetry, "tcp", "shutdown") == 0
    for w in (busy_writer, idle_writer):
        w.close()


async def test_aclose_cancels_what_outlives_the_grace_and_counts_it(
    start: Start, telemetry: Telemetry
) -> None:
    async def hangs(event: Event) -> bytes:
        await asyncio.sleep(3600)
        return b""

    dispatch = StubDispatch(hangs)
    source, port = await start(dispatch, framing="stream")
    reader, writer = await connect(port)
    writer.write(b"event")
    writer.write_eof()
    await until(lambda: len(dispatch.calls) == 1)
    await source.aclose(grace_s=0.1)
    assert await reader.read() == b""
    assert dropped(telemetry, "tcp", "shutdown") == 1
    writer.close()
