"""TCP port triggers.

``line`` framing: every newline-terminated line of a connection is an event
and its result is written back as one line. A result that ends with one
newline is sent as it is (the newline ends the line); a result with a newline
anywhere else cannot be one line, so the client gets ``ERROR Invalid result:
the result contains a newline; use stream framing`` instead, and the drop is
counted -- silently rewriting the function's output would corrupt it.

``stream`` framing: the whole connection, until the client half-closes, is one
event, answered once, byte for byte, before the connection is closed.

Errors are answered as ``ERROR <title>: <detail>`` (one line in line framing;
a newline in the detail becomes a space). A port serves at most
``max_connections`` connections at once: past it a connection is accepted,
answered ``ERROR Overloaded: ...`` and closed. A connection that does not
complete a line (or its stream) within ``idle_timeout_s`` is answered ``ERROR
Idle timeout: ...`` and closed.

Nothing is dropped silently; ``nfaas_trigger_dropped_total{trigger="tcp",
reason=...}`` counts

``too_large``
    a line or stream over the event size limit (the router counts the same
    reason for an event it refuses);
``too_many_connections``
    a connection refused over ``max_connections``;
``idle_timeout``
    a connection closed for not completing a line or stream in time;
``newline_in_result``
    a result with a newline that line framing cannot carry;
``internal_error``
    dispatching or serving raised something other than an ``NfaasError`` (a
    bug; logged with its traceback);
``shutdown``
    an event still running when the grace period of ``aclose`` ran out, or a
    connection accepted while the listener was closing.

A function that fails (or is overloaded) is an invocation outcome
(``nfaas_invocations_total``) and answered with an ``ERROR`` line, not a drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from nfaas.errors import NfaasError
from nfaas.packages.descriptors import TcpTrigger
from nfaas.sandboxes.base import Event
from nfaas.telemetry.metrics import Telemetry
from nfaas.triggers.base import Dispatch, SourceState, TriggerBinding, TriggerSource, drain

log = logging.getLogger(__name__)

#: connections served at once per port, by default
MAX_CONNECTIONS = 1024
#: seconds a connection may take to complete a line (or its stream), by default
IDLE_TIMEOUT_S = 60.0
#: seconds given to a closing connection to flush what was written to it
_FLUSH_S = 1.0


def _error(title: str, detail: str) -> bytes:
    return f"ERROR {title}: {detail}".replace("\r", " ").replace("\n", " ").encode()


class TcpSource(TriggerSource):
    def __init__(
        self,
        binding: TriggerBinding,
        dispatch: Dispatch,
        telemetry: Telemetry,
        host: str,
        max_event_bytes: int,
        *,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        super().__init__(binding)
        assert isinstance(binding.spec, TcpTrigger)
        self._spec = binding.spec
        self._dispatch = dispatch
        self._telemetry = telemetry
        self._host = host
        self._max = max_event_bytes
        self._max_connections = max_connections
        self._idle = idle_timeout_s
        self._server: asyncio.Server | None = None
        #: every connection handler, including those refusing a connection
        self._tasks: set[asyncio.Task[None]] = set()
        #: connections being served (counted against ``max_connections``)
        self._serving = 0
        #: connections holding an event: read, being dispatched, or its answer being written
        self._busy: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self._host, self._spec.port, limit=self._max + 1
        )
        self.state = SourceState.LISTENING

    def _drop(self, reason: str) -> None:
        self.failed += 1
        self._telemetry.dropped("tcp", reason)

    def _frame(self, message: bytes) -> bytes:
        return message + b"\n" if self._spec.framing == "line" else message

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self.state is SourceState.CLOSED:
                self._drop("shutdown")
                writer.write(self._frame(_error("Unavailable", "the trigger is closing")))
            elif self._serving >= self._max_connections:
                self._drop("too_many_connections")
                writer.write(
                    self._frame(_error(
                        "Overloaded",
                        f"{self._serving} connections are open on tcp port {self._spec.port}, "
                        "the most it serves at once",
                    ))
                )  # fmt: skip
            else:
                self._serving += 1
                try:
                    await self._connection(reader, writer)
                finally:
                    self._serving -= 1
        finally:
            self._busy.discard(task)
            try:
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), _FLUSH_S)
            finally:
                self._tasks.discard(task)  # only now: aclose waits for the connection to close

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peer = writer.get_extra_info("peername")
        meta = {"peer": f"{peer[0]}:{peer[1]}" if peer else "", "port": self._spec.port}
        try:
            if self._spec.framing == "line":
                await self._lines(reader, writer, meta, task)
            else:
                await self._stream(reader, writer, meta, task)
        except ConnectionError:
            pass  # the peer went away; what it sent last was answered or never complete
        except Exception:
            self._drop("internal_error")
            log.exception("tcp %s: serving %s failed", self.binding.describe(), meta["peer"])

    async def _lines(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        meta: dict[str, object],
        task: asyncio.Task[Any],
    ) -> None:
        # A closing listener lets the line in hand finish, then ends the connection.
        while self.state is not SourceState.CLOSED:
            try:
                async with asyncio.timeout(self._idle):
                    line = await reader.readuntil(b"\n")
            except TimeoutError:
                await self._idle_timeout(writer)
                return
            except asyncio.LimitOverrunError:
                self._drop("too_large")
                writer.write(_error("Event too large", f"a line is over {self._max} bytes") + b"\n")
                await writer.drain()
                return
            except asyncio.IncompleteReadError as exc:
                if not exc.partial:
                    return
                line = exc.partial
            self._busy.add(task)
            try:
                ok, answer = await self._invoke(line.rstrip(b"\r\n"), dict(meta))
                if ok:
                    answer = self._one_line(answer)
                writer.write(answer + b"\n")
                await writer.drain()
            finally:
                self._busy.discard(task)
            if reader.at_eof():
                return

    def _one_line(self, result: bytes) -> bytes:
        """The result as one line (without its newline), or an ERROR line if it cannot be."""
        line = result[:-1] if result.endswith(b"\n") else result
        if b"\n" in line:
            self._drop("newline_in_result")
            return _error("Invalid result", "the result contains a newline; use stream framing")
        self.delivered += 1
        return line

    async def _stream(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        meta: dict[str, object],
        task: asyncio.Task[Any],
    ) -> None:
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self._idle):
                while size <= self._max and (data := await reader.read(self._max + 1 - size)):
                    self._busy.add(task)  # from its first byte, the stream is an event in hand
                    chunks.append(data)
                    size += len(data)
        except TimeoutError:
            await self._idle_timeout(writer)
            return
        if size > self._max:
            self._drop("too_large")
            writer.write(_error("Event too large", f"over {self._max} bytes"))
        else:
            self._busy.add(task)
            ok, answer = await self._invoke(b"".join(chunks), meta)
            if ok:
                self.delivered += 1
            writer.write(answer)
        await writer.drain()

    async def _idle_timeout(self, writer: asyncio.StreamWriter) -> None:
        self._drop("idle_timeout")
        what = "line" if self._spec.framing == "line" else "stream"
        writer.write(self._frame(_error("Idle timeout", f"no complete {what} in {self._idle:g} s")))
        await writer.drain()

    async def _invoke(self, body: bytes, meta: dict[str, object]) -> tuple[bool, bytes]:
        """``(True, result)``, or ``(False, an ERROR message)`` with the failure counted."""
        b = self.binding
        try:
            result = await self._dispatch(
                b.app, b.function, Event("tcp", body, meta), arrival=time.monotonic()
            )
        except NfaasError as exc:
            # Counted where it happened: by the router or as an invocation outcome.
            self.failed += 1
            return False, _error(exc.title, exc.detail)
        except Exception:
            self._drop("internal_error")
            log.exception(
                "tcp %s from %s: dispatching the event failed", b.describe(), meta["peer"]
            )
            return False, _error("Internal error", "the trigger failed; see the platform log")
        return True, result.body

    def _cancelled(self, task: asyncio.Task[Any]) -> None:
        if task in self._busy:
            self._drop("shutdown")

    async def _close(self, grace_s: float) -> None:
        if self._server is not None:
            self._server.close()  # no new connections from here on
        # A connection waiting for its next line (or first byte) holds no event: end it now.
        for task in self._tasks - self._busy:
            task.cancel()
        await drain(self._tasks, grace_s, self._cancelled)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), _FLUSH_S)
