"""Subscriptions and the outbox of their notifications, in the state store (gap #5.2).

A subscription names a callback URI, a filter and an optional secret (for the
HMAC signature). Every notification it is due is written to the outbox in the
same transaction that decides it, and leaves the outbox only once delivered or
given up, so none is lost across a restart of the platform.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nfaas.catalog.store import StateStore
from nfaas.notifications.events import LifecycleEvent, NotificationType

SubscriptionState = Literal["ACTIVE", "SUSPENDED"]


class SubscriptionFilter(BaseModel):
    """Which notifications a subscription wants; an absent list means all."""

    model_config = ConfigDict(extra="forbid")

    notificationTypes: list[NotificationType] | None = None
    functions: list[str] | None = Field(
        default=None, description="app/function, or app/* for every function of an application"
    )
    versions: list[str] | None = None

    def matches(self, event: LifecycleEvent) -> bool:
        if self.notificationTypes is not None and event.type not in self.notificationTypes:
            return False
        if self.functions is not None:
            if event.app is None:
                return False
            wanted = {f"{event.app}/*", f"{event.app}/{event.function}"}
            if event.function is None:  # a package event: any function of its application
                wanted = {f for f in self.functions if f.split("/", 1)[0] == event.app}
            if not wanted.intersection(self.functions):
                return False
        return self.versions is None or event.version in self.versions


@dataclass(frozen=True, slots=True)
class SubscriptionRecord:
    id: str
    tenant: str
    callback: str
    filter: SubscriptionFilter
    secret: str | None
    state: SubscriptionState
    created_at: float
    delivered: int = 0
    failed: int = 0
    last_error: str | None = None

    def as_api(self, pending: int) -> dict[str, Any]:
        """The resource as the API shows it: never the secret."""
        return {
            "id": self.id,
            "callbackUri": self.callback,
            "filter": self.filter.model_dump(exclude_none=True),
            "signed": self.secret is not None,
            "state": self.state,
            "delivered": self.delivered,
            "failed": self.failed,
            "pending": pending,
            "lastError": self.last_error,
            "createdAt": self.created_at,
            "_links": {"self": {"href": f"/api/v1/subscriptions/{self.id}"}},
        }


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    seq: int
    subscription_id: str
    body: bytes
    attempts: int


class SubscriptionStore:
    def __init__(self, store: StateStore) -> None:
        self._store = store

    def add(self, r: SubscriptionRecord) -> None:
        with self._store.connection() as db:
            db.execute(
                "INSERT INTO subscriptions (id, tenant, callback, filter, secret, state, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (r.id, r.tenant, r.callback, r.filter.model_dump_json(), r.secret, r.state,
                 r.created_at),
            )  # fmt: skip

    def get(self, subscription_id: str) -> SubscriptionRecord | None:
        with self._store.connection() as db:
            row = db.execute(
                "SELECT * FROM subscriptions WHERE id = ?", (subscription_id,)
            ).fetchone()
        return _record(row) if row else None

    def all(self, tenant: str | None = None) -> list[SubscriptionRecord]:
        """A tenant's subscriptions; every one with None."""
        where, args = ("WHERE tenant = ?", (tenant,)) if tenant is not None else ("", ())
        with self._store.connection() as db:
            rows = db.execute(f"SELECT * FROM subscriptions {where} ORDER BY created_at", args)
            return [_record(r) for r in rows.fetchall()]

    def delete(self, subscription_id: str) -> None:
        with self._store.connection() as db:
            db.execute("DELETE FROM subscriptions WHERE id = ?", (subscription_id,))

    def set_state(self, subscription_id: str, state: SubscriptionState) -> None:
        with self._store.connection() as db:
            db.execute("UPDATE subscriptions SET state = ? WHERE id = ?", (state, subscription_id))

    # -- the outbox -------------------------------------------------------------------------

    def enqueue(self, items: list[tuple[str, bytes]], now: float) -> None:
        """(subscription, body) pairs, all or none."""
        with self._store.transaction(), self._store.connection() as db:
            # not before what the subscription already has waiting: notifications stay in order
            db.executemany(
                "INSERT INTO notification_outbox (subscription_id, body, next_at, created_at) "
                "VALUES (?, ?, MAX(?, COALESCE((SELECT MAX(next_at) FROM notification_outbox "
                "WHERE subscription_id = ?), 0)), ?)",
                [(sid, body.decode(), now, sid, now) for sid, body in items],
            )

    def due(self, now: float, limit: int = 100) -> list[OutboxEntry]:
        with self._store.connection() as db:
            rows = db.execute(
                "SELECT o.seq, o.subscription_id, o.body, o.attempts FROM notification_outbox o "
                "JOIN subscriptions s ON s.id = o.subscription_id "
                "WHERE o.next_at <= ? AND s.state = 'ACTIVE' ORDER BY o.seq LIMIT ?",
                (now, limit),
            ).fetchall()
        return [OutboxEntry(r[0], r[1], r[2].encode(), r[3]) for r in rows]

    def next_due(self) -> float | None:
        with self._store.connection() as db:
            row = db.execute(
                "SELECT MIN(o.next_at) FROM notification_outbox o JOIN subscriptions s "
                "ON s.id = o.subscription_id WHERE s.state = 'ACTIVE'"
            ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def pending(self, subscription_id: str) -> int:
        with self._store.connection() as db:
            row = db.execute(
                "SELECT COUNT(*) FROM notification_outbox WHERE subscription_id = ?",
                (subscription_id,),
            ).fetchone()
        return int(row[0])

    def delivered(self, entry: OutboxEntry) -> None:
        with self._store.transaction(), self._store.connection() as db:
            db.execute("DELETE FROM notification_outbox WHERE seq = ?", (entry.seq,))
            db.execute(
                "UPDATE subscriptions SET delivered = delivered + 1 WHERE id = ?",
                (entry.subscription_id,),
            )

    def retry(self, entry: OutboxEntry, next_at: float, error: str) -> None:
        with self._store.transaction(), self._store.connection() as db:
            db.execute(
                "UPDATE notification_outbox SET attempts = attempts + 1 WHERE seq = ?", (entry.seq,)
            )
            # the entries queued after it wait as long, so that they stay in order
            db.execute(
                "UPDATE notification_outbox SET next_at = MAX(next_at, ?) "
                "WHERE subscription_id = ? AND seq >= ?",
                (next_at, entry.subscription_id, entry.seq),
            )
            db.execute(
                "UPDATE subscriptions SET last_error = ? WHERE id = ?",
                (error, entry.subscription_id),
            )

    def give_up(self, entry: OutboxEntry, error: str) -> int:
        """The callback kept failing: suspend the subscription and drop what it has queued."""
        with self._store.transaction(), self._store.connection() as db:
            dropped = db.execute(
                "DELETE FROM notification_outbox WHERE subscription_id = ?",
                (entry.subscription_id,),
            ).rowcount
            db.execute(
                "UPDATE subscriptions SET state = 'SUSPENDED', failed = failed + ?, "
                "last_error = ? WHERE id = ?",
                (dropped, error, entry.subscription_id),
            )
        return int(dropped)


def _record(row: sqlite3.Row) -> SubscriptionRecord:
    return SubscriptionRecord(
        id=row["id"],
        tenant=row["tenant"],
        callback=row["callback"],
        filter=SubscriptionFilter.model_validate(json.loads(row["filter"])),
        secret=row["secret"],
        state=row["state"],
        created_at=row["created_at"],
        delivered=row["delivered"],
        failed=row["failed"],
        last_error=row["last_error"],
    )
