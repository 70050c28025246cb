"""HTTP triggers: ``/fn/<app>/<function>`` and the custom routes of descriptors.

These are plain Starlette endpoints, not FastAPI ones: this is the event path,
and it skips dependency injection and response validation to stay close to the
bare server's latency. They take no token: like a device sending a UDP
datagram, an HTTP client of a function is the function's public.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nfaas.api.body import read_body
from nfaas.errors import MethodNotAllowed, NotFound
from nfaas.platform import Platform
from nfaas.sandboxes.base import Event, Result

#: request headers a function never sees: the caller's credentials for the platform
#: are not the function's business (and an operator's token must not reach tenant code)
PRIVATE_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


def function_headers(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.headers.items() if k not in PRIVATE_HEADERS}


async def unless_disconnected(request: Request, work: Awaitable[Result]) -> Result:
    """Run ``work``, cancelling it if the client goes away first.

    Starlette does not cancel a handler whose client disconnected; under overload,
    retrying clients would otherwise fill the queue with events nobody waits for.
    The body has been read, so the next ASGI message is the disconnect.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        raise asyncio.CancelledError("the client disconnected")
    return task.result()


async def _disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def routes(platform: Platform) -> tuple[list[Route], Route]:
    dispatch = platform.router.dispatch
    limit = platform.config.max_event_bytes
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

    def event_of(request: Request, body: bytes) -> Event:
        return Event(
            "http",
            body,
            {
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "headers": function_headers(request),
            },
        )

    async def invoke(request: Request) -> Response:
        arrival = time.monotonic()
        params = request.path_params
        body = await read_body(request, limit, "event")
        result = await unless_disconnected(
            request,
            dispatch(params["app"], params["function"], event_of(request, body), arrival=arrival),
        )
        return Response(result.body, media_type=result.content_type)

    async def custom(request: Request) -> Response:
        arrival = time.monotonic()
        route = platform.router.http_routes.get(request.url.path)
        if route is None:
            raise NotFound(f"no function is bound to {request.url.path}")
        if request.method not in route.methods:
            raise MethodNotAllowed(
                f"{request.method} is not bound on {request.url.path} (bound: {', '.join(sorted(route.methods))})"
            )
        body = await read_body(request, limit, "event")
        result = await dispatch(route.app, route.function, event_of(request, body), arrival=arrival)
        return Response(result.body, media_type=result.content_type)

    fn_routes = [
        Route("/fn/{app}/{function}", invoke, methods=methods),
        Route("/fn/{app}/{function}/{rest:path}", invoke, methods=methods),
    ]
    return fn_routes, Route("/{path:path}", custom, methods=methods)
