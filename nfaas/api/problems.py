"""The one table from exceptions to HTTP statuses, and RFC 9457 problem documents."""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from nfaas import errors as e

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)

#: most specific first: the first class an error is an instance of decides
STATUS: tuple[tuple[type[e.NfaasError], int], ...] = (
    (e.EventTooLarge, 413),
    (e.MethodNotAllowed, 405),
    (e.InvalidRequest, 400),
    (e.Unauthenticated, 401),
    (e.Forbidden, 403),
    (e.NotFound, 404),
    (e.Conflict, 409),
    (e.PackageError, 422),
    (e.InsufficientCapacity, 503),
    (e.BackendUnavailable, 503),
    (e.EbpfVerifierError, 422),
    (e.SandboxStartError, 502),
    (e.FunctionRaised, 500),
    (e.FunctionTimeout, 504),
    (e.FunctionCrashed, 502),
    (e.FunctionOutOfMemory, 502),
    (e.SandboxError, 502),
)


def status_of(exc: e.NfaasError) -> int:
    if isinstance(exc, e.Overloaded):
        # A full queue is the client's cue to slow down; a deadline passed is the server's state.
        return 429 if exc.reason == "queue_full" else 503
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def slug(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def problem_json(status: int, title: str, detail: str, kind: str, **extra: Any) -> bytes:
    body = {"type": f"urn:nfaas:problem:{kind}", "title": title, "status": status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v not in (None, [], {})})
    return orjson.dumps(body)


def render(exc: e.NfaasError) -> tuple[int, bytes, dict[str, str]]:
    """The status, problem document and headers of an error: the one mapping, used everywhere."""
    status = status_of(exc)
    extra = dict(exc.extra)
    if isinstance(exc, e.FunctionRaised) and exc.traceback:
        extra["traceback"] = exc.traceback
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="nfaas"'
    if isinstance(exc, e.Overloaded):
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return (
        status,
        problem_json(status, exc.title, exc.detail, slug(type(exc).__name__), **extra),
        headers,
    )


def problem(status: int, title: str, detail: str, kind: str, **extra: Any) -> Response:
    body = problem_json(status, title, detail, kind, **extra)
    return Response(body, status_code=status, media_type=PROBLEM_JSON)


async def nfaas_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, e.NfaasError)
    status, body, headers = render(exc)
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no such path, method not allowed) as problem documents too."""
    assert isinstance(exc, StarletteHTTPException)
    kind = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
    detail = (
        f"no such resource: {request.method} {request.url.path}"
        if exc.status_code == 404
        else str(exc.detail)
    )
    response = problem(exc.status_code, title, detail, kind)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def unexpected_error_handler(request: Request, exc: Exception) -> Response:
    """A bug of ours: still a problem document, with the detail in the log, not the answer."""
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(
        500,
        "Internal error",
        f"unexpected {type(exc).__name__}; see the platform log",
        "internal-error",
    )


async def validation_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": ".".join(str(p) for p in err["loc"]), "msg": err["msg"]} for err in exc.errors()
    ]
    detail = "; ".join(f"{err['loc']}: {err['msg']}" for err in errors)
    return problem(400, "Invalid request", detail, "invalid-request", errors=errors)
