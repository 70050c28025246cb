"""Request dependencies shared by the route modules."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Header

from nfaas.api.auth import Auth, Principal


def principal_dependency(auth: Auth) -> Callable[..., Principal]:
    def principal(authorization: str | None = Header(default=None)) -> Principal:
        return auth.authenticate(authorization)

    return principal
