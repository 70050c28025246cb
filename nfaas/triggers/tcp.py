"""TCP port triggers.

``line`` framing: every newline-terminated line of a connection is an event
and its result is written back as one line (an error as ``ERROR <title>:
<detail>``). ``stream`` framing: the whole connection, until the client
half-closes, is one event, answered once before the connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from nfaas.errors import EventTooLarge, NfaasError
from nfaas.packages.descriptors import TcpTrigger
from nfaas.sandboxes.base import Event
from nfaas.telemetry.metrics import Telemetry
from nfaas.triggers.base import Dispatch, SourceState, TriggerBinding, TriggerSource

log = logging.getLogger(__name__)


class TcpSource(TriggerSource):
    def __init__(
        self,
        binding: TriggerBinding,
        dispatch: Dispatch,
        telemetry: Telemetry,
        host: str,
        max_event_bytes: int,
    ) -> None:
        super().__init__(binding)
        assert isinstance(binding.spec, TcpTrigger)
        self._spec = binding.spec
        self._dispatch = dispatch
        self._telemetry = telemetry
        self._host = host
        self._max = max_event_bytes
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self._host, self._spec.port, limit=self._max + 1
        )
        self.state = SourceState.LISTENING

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        peer = writer.get_extra_info("peername")
        meta = {"peer": f"{peer[0]}:{peer[1]}" if peer else "", "port": self._spec.port}
        try:
            if self._spec.framing == "line":
                await self._lines(reader, writer, meta)
            else:
                await self._stream(reader, writer, meta)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _lines(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, meta: dict[str, object]
    ) -> None:
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                self._telemetry.dropped("tcp", "too_large")
                writer.write(f"ERROR Event too large: a line is over {self._max} bytes\n".encode())
                await writer.drain()
                return
            except asyncio.IncompleteReadError as exc:
                if not exc.partial:
                    return
                line = exc.partial
            answer = await self._answer(line.rstrip(b"\r\n"), dict(meta))
            writer.write(answer.replace(b"\n", b" ") + b"\n")
            await writer.drain()
            if reader.at_eof():
                return

    async def _stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, meta: dict[str, object]
    ) -> None:
        data = await reader.read(self._max + 1)
        chunks = [data]
        size = len(data)
        while data and size <= self._max:
            data = await reader.read(self._max + 1 - size)
            chunks.append(data)
            size += len(data)
        if size > self._max:
            self._telemetry.dropped("tcp", "too_large")
            writer.write(f"ERROR Event too large: over {self._max} bytes".encode())
        else:
            writer.write(await self._answer(b"".join(chunks), meta))
        await writer.drain()

    async def _answer(self, body: bytes, meta: dict[str, object]) -> bytes:
        b = self.binding
        try:
            result = await self._dispatch(
                b.app, b.function, Event("tcp", body, meta), arrival=time.monotonic()
            )
        except EventTooLarge as exc:
            self.failed += 1
            return f"ERROR {exc.title}: {exc.detail}".encode()
        except NfaasError as exc:
            self.failed += 1
            return f"ERROR {exc.title}: {exc.detail}".encode()
        self.delivered += 1
        return result.body

    async def aclose(self) -> None:
        if self.state is SourceState.CLOSED:
            return
        self.state = SourceState.CLOSED
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
