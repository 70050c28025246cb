"""Stored version-mapping policies: one row per function in the state store.

A row holds the weights (stable version first), the version a rollback returns
to, the sticky key, the automatic rollback rule and the last rollback. A
function without a row serves its newest enabled version.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from nfaas.canary.rules import RollbackRule
from nfaas.catalog.store import StateStore
from nfaas.triggers.distributor import StickyKey, VersionPolicy

FunctionKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class PolicyRecord:
    app: str
    name: str
    #: version -> weight, in order: the stable version first
    weights: dict[str, int]
    #: the last good version: where a rollback sends every event
    stable: str
    sticky: StickyKey | None
    rule: RollbackRule | None
    updated_at: float
    #: the last rollback: when, from which versions, why, and who (``auto`` or ``manual``)
    last_rollback: dict[str, Any] | None = None

    @property
    def key(self) -> FunctionKey:
        return (self.app, self.name)

    @property
    def canaries(self) -> list[str]:
        """The versions with weight other than the stable one."""
        return [v for v, w in self.weights.items() if w > 0 and v != self.stable]

    def policy(self) -> VersionPolicy:
        return VersionPolicy(tuple((v, w) for v, w in self.weights.items() if w > 0), self.sticky)


class PolicyStore:
    def __init__(self, store: StateStore) -> None:
        self._store = store

    def all(self) -> dict[FunctionKey, PolicyRecord]:
        with self._store.connection() as db:
            rows = db.execute("SELECT * FROM version_policies ORDER BY app, name").fetchall()
        return {(r["app"], r["name"]): _record(r) for r in rows}

    def get(self, app: str, name: str) -> PolicyRecord | None:
        with self._store.connection() as db:
            row = db.execute(
                "SELECT * FROM version_policies WHERE app = ? AND name = ?", (app, name)
            ).fetchone()
        return _record(row) if row else None

    def put(self, record: PolicyRecord) -> None:
        sticky = (
            json.dumps({"source": record.sticky.source, "name": record.sticky.name})
            if record.sticky
            else None
        )
        rule = record.rule.model_dump_json() if record.rule else None
        last = json.dumps(record.last_rollback) if record.last_rollback else None
        with self._store.connection() as db:
            db.execute(
                "INSERT INTO version_policies (app, name, weights, stable, sticky, rollback_rule, "
                "last_rollback, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (app, name) DO UPDATE SET weights = excluded.weights, "
                "stable = excluded.stable, sticky = excluded.sticky, "
                "rollback_rule = excluded.rollback_rule, last_rollback = excluded.last_rollback, "
                "updated_at = excluded.updated_at",
                (record.app, record.name, json.dumps(list(record.weights.items())),
                 record.stable, sticky, rule, last, record.updated_at),
            )  # fmt: skip

    def delete(self, app: str, name: str) -> bool:
        with self._store.connection() as db:
            cursor = db.execute(
                "DELETE FROM version_policies WHERE app = ? AND name = ?", (app, name)
            )
        return cursor.rowcount > 0


def _record(row: sqlite3.Row) -> PolicyRecord:
    sticky = json.loads(row["sticky"]) if row["sticky"] else None
    return PolicyRecord(
        app=row["app"],
        name=row["name"],
        weights={v: int(w) for v, w in json.loads(row["weights"])},
        stable=row["stable"],
        sticky=StickyKey(sticky["source"], sticky["name"]) if sticky else None,
        rule=RollbackRule.model_validate_json(row["rollback_rule"])
        if row["rollback_rule"]
        else None,
        updated_at=row["updated_at"],
        last_rollback=json.loads(row["last_rollback"]) if row["last_rollback"] else None,
    )
