"""An in-process backend that calls Python callables: for testing the layers above sandboxes.

Like httpx's MockTransport, it lets function management, triggers and the API be
tested without real isolation. It is never chosen by a runtime the platform
registers itself; tests wire it explicitly.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import ClassVar

from nfaas.errors import FunctionFailure, FunctionRaised, FunctionTimeout, SandboxStartError
from nfaas.sandboxes.base import (
    Event,
    FunctionCode,
    Result,
    Sandbox,
    SandboxBackend,
    SandboxState,
    SandboxStats,
)

Handler = Callable[[Event], bytes | Awaitable[bytes]]


class MockSandbox(Sandbox):
    backend: ClassVar[str] = "mock"

    def __init__(self, owner: MockBackend) -> None:
        super().__init__()
        self._owner = owner
        self._handler: Handler | None = None
        self._timeout = 10.0
        self.code: FunctionCode | None = None

    async def prepare(self) -> None:
        if self._owner.prepare_delay:
            await asyncio.sleep(self._owner.prepare_delay)
        self.state = SandboxState.PREPARED
        self._owner.prepared += 1

    async def load(self, code: FunctionCode) -> None:
        if self.state is not SandboxState.PREPARED:
            raise SandboxStartError(f"cannot load into a sandbox in state {self.state.value}")
        try:
            self._handler = self._owner.handlers[code.handler]
        except KeyError:
            self.state = SandboxState.FAILED
            raise SandboxStartError(f"{code.ref}: no mock handler {code.handler!r}") from None
        if self._owner.load_delay:
            await asyncio.sleep(self._owner.load_delay)
        self.code = code
        self._timeout = code.limits.timeout_s
        self.state = SandboxState.LOADED

    async def invoke(self, event: Event) -> Result:
        assert self._handler is not None and self.state is SandboxState.LOADED
        started = time.monotonic()
        try:
            out = self._handler(event)
            if inspect.isawaitable(out):
                out = await asyncio.wait_for(out, self._timeout)
        except TimeoutError:
            self.state = SandboxState.FAILED
            raise FunctionTimeout(f"no answer within {self._timeout:g} s") from None
        except FunctionFailure as exc:
            if exc.fatal:
                self.state = SandboxState.FAILED
            raise
        except Exception as exc:
            raise FunctionRaised(
                f"{type(exc).__name__}: {exc}", exc_type=type(exc).__name__
            ) from exc
        return Result(body=out, first_line_at=started)

    async def stats(self) -> SandboxStats:
        return SandboxStats(rss_bytes=1 << 20, cpu_seconds=0.0)

    async def aclose(self) -> None:
        if self.state is not SandboxState.CLOSED:
            self.state = SandboxState.CLOSED
            self._owner.closed += 1


class MockBackend(SandboxBackend):
    name: ClassVar[str] = "mock"

    def __init__(self, handlers: dict[str, Handler] | None = None) -> None:
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self.prepare_delay = 0.0
        self.load_delay = 0.0
        self.prepared = 0
        self.closed = 0

    def create(self) -> Sandbox:
        return MockSandbox(self)
