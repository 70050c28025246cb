"""A notification endpoint on 127.0.0.1: answers the test GET and records the POSTs."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Receiver:
    port: int
    get_status: int = 204
    post_status: int = 204
    gets: int = 0
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.posts]

    def types(self) -> list[str]:
        return [b["notificationType"] for b in self.bodies()]

    async def wait_for(self, count: int, timeout_s: float = 5.0) -> None:
        """Until ``count`` notifications arrived (bounded)."""
        async with asyncio.timeout(timeout_s):
            while len(self.posts) < count:  # noqa: ASYNC110 (bounded by the timeout)
                await asyncio.sleep(0.01)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["method"] == "GET":
            self.gets += 1
            status = self.get_status
        else:
            status = self.post_status
            if status < 300:
                headers = {k.decode(): v.decode() for k, v in scope["headers"]}
                self.posts.append((headers, body))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@asynccontextmanager
async def receiving(port: int | None = None, **settings: Any) -> AsyncIterator[Receiver]:
    receiver = Receiver(port or free_port(), **settings)
    server = uvicorn.Server(
        uvicorn.Config(receiver, host="127.0.0.1", port=receiver.port, log_config=None,
                       lifespan="off", access_log=False)
    )  # fmt: skip
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(5):
            while not server.started:  # noqa: ASYNC110 (bounded by the timeout)
                await asyncio.sleep(0.01)
        yield receiver
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 5)
