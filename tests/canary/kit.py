"""A platform on the mock backend with two versions of one function, for canary tests
and the subscription and dashboard tests that build on them."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from nfaas.api.app import create_asgi
from nfaas.platform import Platform
from nfaas.sandboxes.base import Event
from nfaas.sandboxes.mock import MockBackend
from tests.api.conftest import make_config
from tests.helpers import function_doc, package


def boom(event: Event) -> bytes:
    raise ValueError("version 2 is broken")


HANDLERS = {"v1": lambda e: b"v1", "v2": lambda e: b"v2", "boom": boom}


@dataclass
class Kit:
    platform: Platform
    http: httpx.AsyncClient
    operator: dict[str, str]
    tmp: Path

    def tenant(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.platform.auth.issue(name)}"}

    async def onboard(self, version: str, handler: str, *, tenant: str = "acme",
                      app: str = "demo", fn: str = "fn") -> None:  # fmt: skip
        data = package(self.tmp / f"{app}-{version}", app,
                       [function_doc(fn, app=app, version=version, handler=handler)],
                       version=version)  # fmt: skip
        await self.platform.onboarding.onboard(data, tenant, expect="application")

    async def events(self, count: int, fn: str = "fn", **meta: Any) -> dict[str, int]:
        """``count`` events to demo/<fn>; how many each answer (or error) came back."""
        seen: dict[str, int] = {}
        for i in range(count):
            event = Event("invoke", b"{}", {"headers": {"x-device": f"d{i}"}, **meta})
            try:
                answer = (await self.platform.router.dispatch("demo", fn, event)).body.decode()
            except Exception as exc:
                answer = type(exc).__name__
            seen[answer] = seen.get(answer, 0) + 1
        return seen


@asynccontextmanager
async def running_kit(tmp: Path, **config: Any) -> AsyncIterator[Kit]:
    platform = Platform(make_config(tmp, **config), backends={"mock": MockBackend(HANDLERS)})
    platform.runtimes.register_builtins()
    if platform.runtimes.query("mock") == []:
        platform.runtimes.create("mock", "1", "mock", "in-process test backend")
    async with platform:
        transport = httpx.ASGITransport(app=create_asgi(platform))
        async with httpx.AsyncClient(transport=transport, base_url="http://nfaas") as http:
            operator = {"Authorization": f"Bearer {platform.operator_token}"}
            yield Kit(platform, http, operator, tmp)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def serving(platform: Platform) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_asgi(platform), host="127.0.0.1", port=port, log_config=None,
                       lifespan="off", access_log=False)
    )  # fmt: skip
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(5):
            while not server.started:  # noqa: ASYNC110 (bounded by the timeout)
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 5)
