"""Authentication (the IoT paper's Fig. 1): bearer tokens, stored hashed.

Tenants (application providers) see and change only their own packages and
functions; the operator manages runtimes, pools and node capacity and sees
everything. The first start creates an operator token and writes it, with
the API's address, to files in the data directory readable only by root, so
that the CLI on the same machine needs no setup.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from nfaas.catalog.store import StateStore, TokenRecord
from nfaas.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unauthenticated

Role = Literal["operator", "tenant"]
OPERATOR_TENANT = "operator"
TOKEN_PREFIX = "nfaas_"


@dataclass(frozen=True, slots=True)
class Principal:
    tenant: str
    role: Role

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"

    @property
    def scope(self) -> str | None:
        """The tenant whose resources this principal may see; None for the operator (all)."""
        return None if self.is_operator else self.tenant

    def require_operator(self, what: str) -> None:
        if not self.is_operator:
            raise Forbidden(f"{what} is for the operator; tenant {self.tenant!r} may not")

    def may_touch(self, tenant: str) -> bool:
        return self.is_operator or tenant == self.tenant


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Auth:
    def __init__(self, store: StateStore) -> None:
        self._store = store
        self._cache: dict[str, Principal] = {}

    def issue(self, tenant: str, role: Role = "tenant", name: str = "") -> str:
        if not re.match(r"^[a-z0-9][a-z0-9-]{0,62}$", tenant):
            raise InvalidRequest(f"tenant name {tenant!r} must be a lower-case DNS label")
        if role == "tenant" and tenant == OPERATOR_TENANT:
            raise InvalidRequest(f"{OPERATOR_TENANT!r} is reserved for the operator")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self._store.add_token(
            TokenRecord(hash_token(token), tenant, role, name or tenant, time.time())
        )
        return token

    def tokens(self) -> list[dict[str, object]]:
        """Every token, named by the first 12 hex digits of its hash (the token itself is not kept)."""
        return [
            {
                "id": r.hash[:12],
                "tenant": r.tenant,
                "role": r.role,
                "name": r.name,
                "createdAt": r.created_at,
            }
            for r in self._store.list_tokens()
        ]

    def revoke(self, token_id: str) -> None:
        """Revoke by id (a hash prefix of at least 8 digits); refuses the last operator token."""
        if len(token_id) < 8:
            raise InvalidRequest("give at least 8 hex digits of the token id")
        matches = [r for r in self._store.list_tokens() if r.hash.startswith(token_id)]
        if not matches:
            raise NotFound(f"no token {token_id}")
        if len(matches) > 1:
            raise InvalidRequest(f"{token_id} names {len(matches)} tokens; give more digits")
        record = matches[0]
        if record.role == "operator" and self._store.count_tokens("operator") == 1:
            raise Conflict("this is the last operator token; create another before revoking it")
        self._store.delete_token(record.hash)
        self._cache.pop(record.hash, None)

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthenticated(
                "this request needs a bearer token (Authorization: Bearer <token>)"
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
        digest = hash_token(token.strip())
        principal = self._cache.get(digest)
        if principal is None:
            record = self._store.find_token(digest)
            if record is None:
                raise Unauthenticated("unknown token")
            principal = Principal(
                record.tenant, "operator" if record.role == "operator" else "tenant"
            )
            self._cache[digest] = principal
        return principal

    def ensure_operator(self, data_dir: Path) -> str | None:
        """First start: make an operator token and write it to ``data_dir/operator.token``."""
        path = data_dir / "operator.token"
        if path.exists():
            return path.read_text().strip()
        if self._store.count_tokens("operator"):
            return None  # the file was removed on purpose; do not mint another
        token = self.issue(OPERATOR_TENANT, "operator", "first-start operator token")
        write_private(path, token + "\n")
        return token


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def write_client_config(data_dir: Path, url: str, token: str | None) -> None:
    """What ``nfaas`` commands on this machine read when given no URL or token."""
    write_private(data_dir / "client.json", json.dumps({"url": url, "token": token}) + "\n")
