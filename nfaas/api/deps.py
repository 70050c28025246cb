"""Request dependencies shared by the route modules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Header

from nfaas.api.auth import Auth, Principal


def principal_dependency(auth: Auth) -> Callable[..., Awaitable[Principal]]:
    # async: FastAPI runs plain functions in a thread pool, and the state they read
    # (tokens in SQLite, live counters) belongs to the event loop's thread.
    async def principal(authorization: str | None = Header(default=None)) -> Principal:
        return auth.authenticate(authorization)

    return principal
