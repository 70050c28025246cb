"""The one table from exceptions to HTTP statuses, and RFC 9457 problem documents."""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson
from fastapi.exceptions import RequestValidationError
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


def _slug(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def problem(status: int, title: str, detail: str, kind: str, **extra: Any) -> Response:
    body = {"type": f"urn:nfaas:problem:{kind}", "title": title, "status": status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v not in (None, [], {})})
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="nfaas"'
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


async def nfaas_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, e.NfaasError)
    status = status_of(exc)
    extra = dict(exc.extra)
    if isinstance(exc, e.FunctionRaised) and exc.traceback:
        extra["traceback"] = exc.traceback
    response = problem(status, exc.title, exc.detail, _slug(type(exc).__name__), **extra)
    if isinstance(exc, e.Overloaded):
        response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
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
