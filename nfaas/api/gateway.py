"""HTTP triggers: ``/fn/<app>/<function>`` and the custom routes of descriptors.

This is the event path, so it is plain ASGI in front of the management API:
an event never goes through the API's route table, middleware, request
objects or dependency injection, which together cost several times the bare
server's own work per request. Everything else is handed to the API app.

HTTP triggers take no token: like a device sending a UDP datagram, an HTTP
client of a function is the function's public. The caller's credentials for
the platform are never passed on to the function.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from nfaas.api.problems import PROBLEM_JSON, problem_json, render
from nfaas.errors import EventTooLarge, InvalidRequest, MethodNotAllowed, NfaasError
from nfaas.platform import Platform
from nfaas.sandboxes.base import Event, Result

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: request headers a function never sees: the caller's credentials for the platform
#: are not the function's business (and an operator's token must not reach tenant code)
PRIVATE_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})

#: how long an event runs before the gateway starts watching for the client leaving;
#: most events are answered sooner, and a watcher per event would cost a task each
WATCH_AFTER_S = 0.05


def function_headers(items: Any) -> dict[str, str]:
    """Headers for the function, from ASGI (bytes) pairs or a str mapping's items()."""
    out: dict[str, str] = {}
    for key, value in items:
        k = key.decode("latin-1") if isinstance(key, bytes) else key
        if k.lower() in PRIVATE_HEADERS:
            continue
        out[k] = value.decode("latin-1") if isinstance(value, bytes) else value
    return out


class TriggerGateway:
    """ASGI app: events to the router, everything else to ``api``."""

    def __init__(self, platform: Platform, api: ASGIApp) -> None:
        self._platform = platform
        self._router = platform.router
        self._dispatch = platform.router.dispatch
        self._limit = platform.config.max_event_bytes
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/fn/"):
                parts = path.split("/", 4)
                if len(parts) >= 4 and parts[2] and parts[3]:
                    methods = self._router.fn_methods.get((parts[2], parts[3]))
                    if methods is not None and scope["method"] not in methods:
                        bound = ", ".join(sorted(methods))
                        await _send_error(
                            send,
                            MethodNotAllowed(
                                f"{scope['method']} is not bound on {path} (bound: {bound})"
                            ),
                        )
                        return
                    await self._event(scope, receive, send, parts[2], parts[3])
                    return
            else:
                route = self._router.http_routes.get(path)
                if route is not None:
                    if scope["method"] not in route.methods:
                        bound = ", ".join(sorted(route.methods))
                        await _send_error(
                            send,
                            MethodNotAllowed(
                                f"{scope['method']} is not bound on {path} (bound: {bound})"
                            ),
                        )
                        return
                    await self._event(scope, receive, send, route.app, route.function)
                    return
        await self.api(scope, receive, send)

    async def _event(
        self, scope: Scope, receive: Receive, send: Send, app: str, function: str
    ) -> None:
        arrival = time.monotonic()
        try:
            body = await _read_body(scope, receive, self._limit)
            event = Event(
                "http",
                body,
                {
                    "method": scope["method"],
                    "path": scope["path"],
                    "query": scope["query_string"].decode("latin-1"),
                    "headers": function_headers(scope["headers"]),
                },
            )
            result = await _unless_disconnected(
                receive, self._dispatch(app, function, event, arrival=arrival)
            )
        except _ClientGone:
            return
        except NfaasError as exc:
            await _send_error(send, exc)
            return
        except Exception:
            log.exception("unexpected error on %s %s", scope["method"], scope["path"])
            body = problem_json(
                500, "Internal error", "unexpected error; see the platform log", "internal-error"
            )
            await _send(send, 500, PROBLEM_JSON, body)
            return
        await _send(send, 200, result.content_type, result.body)


class _ClientGone(Exception):
    """The client went away before its event was answered."""


async def _unless_disconnected(receive: Receive, work: Awaitable[Result]) -> Result:
    """Run ``work`` in this task, cancelling it if the client disconnects first.

    Starlette and uvicorn do not cancel a handler whose client left; under
    overload, retrying clients would otherwise fill the queue with events nobody
    waits for. A watcher starts only once the event has run ``WATCH_AFTER_S``.
    """
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    assert me is not None
    watcher: asyncio.Task[None] | None = None
    gone = False

    async def watch() -> None:
        nonlocal gone
        # The body has been read, so the next ASGI message is the disconnect.
        while (await receive())["type"] != "http.disconnect":
            pass
        gone = True
        me.cancel()

    def start_watching() -> None:
        nonlocal watcher
        watcher = loop.create_task(watch())

    timer = loop.call_later(WATCH_AFTER_S, start_watching)
    try:
        return await work
    except asyncio.CancelledError:
        if gone:
            me.uncancel()
            raise _ClientGone from None
        raise
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                size = int(value)
            except ValueError:
                raise InvalidRequest("Content-Length is not a number") from None
            if size > limit:
                raise EventTooLarge(f"event of {size} bytes is over the limit of {limit} bytes")
            break
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        if chunk:
            total += len(chunk)
            if total > limit:
                raise EventTooLarge(f"event is over the limit of {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _send_error(send: Send, exc: NfaasError) -> None:
    status, body, headers = render(exc)
    extra = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await _send(send, status, PROBLEM_JSON, body, extra)


async def _send(
    send: Send,
    status: int,
    content_type: str,
    body: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
