"""HTTP triggers: ``/fn/<app>/<function>`` and the custom routes of descriptors.

These are plain Starlette endpoints, not FastAPI ones: this is the event path,
and it skips dependency injection and response validation to stay close to the
bare server's latency. They take no token: like a device sending a UDP
datagram, an HTTP client of a function is the function's public.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nfaas.api.body import read_body
from nfaas.errors import InvalidRequest, NotFound
from nfaas.platform import Platform
from nfaas.sandboxes.base import Event


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
                "headers": dict(request.headers),
            },
        )

    async def invoke(request: Request) -> Response:
        arrival = time.monotonic()
        params = request.path_params
        body = await read_body(request, limit, "event")
        result = await dispatch(
            params["app"], params["function"], event_of(request, body), arrival=arrival
        )
        return Response(result.body, media_type=result.content_type)

    async def custom(request: Request) -> Response:
        arrival = time.monotonic()
        route = platform.router.http_routes.get(request.url.path)
        if route is None:
            raise NotFound(f"no function is bound to {request.url.path}")
        if request.method not in route.methods:
            raise InvalidRequest(
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
