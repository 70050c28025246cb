"""The platform's durable state in one SQLite file.

Packages, function versions (the internal code repository of 7.2.5, keyed by
name and version) and the links saying which packages ship which versions,
runtimes (the FRSR of 7.2.1), pools and tokens. Instances are not stored: they
are recreated on demand after a restart.

SQLite's own module is used synchronously on purpose: every call here is a
management operation of well under a millisecond (WAL mode), none sits on the
event path, and a thread hop per call would cost more than the query. The one
connection belongs to the thread that opened the store, the event loop's;
``foreign_threads`` says what a call from another thread does (``ownership.py``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from nfaas.catalog.ownership import ForeignThreads, StoreThreadError, ThreadOwner, owned
from nfaas.catalog.records import (
    FunctionKey,
    FunctionRecord,
    PackageRecord,
    PoolRecord,
    RuntimeRecord,
    TokenRecord,
    VersionKey,
)
from nfaas.catalog.schema import prepare

__all__ = [
    "FunctionKey",
    "FunctionRecord",
    "PackageRecord",
    "PoolRecord",
    "RuntimeRecord",
    "StateStore",
    "StoreThreadError",
    "TokenRecord",
    "VersionKey",
]


class StateStore:
    """Typed access to the SQLite state; one connection, owned by the thread that opened it."""

    def __init__(self, path: Path, *, foreign_threads: ForeignThreads = "refuse") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._owner = ThreadOwner(foreign_threads)
        # check_same_thread=False so that "serialise" can work; ThreadOwner keeps the promise.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        prepare(self._db)
        self._depth = 0
        self._generation = 0

    @owned
    def close(self) -> None:
        self._db.close()

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """The connection, in the owner's turn: for the modules that keep their own tables
        (version policies, subscriptions and their outbox; ``nfaas.canary``,
        ``nfaas.notifications``). Wrap writes that belong together in ``transaction()``."""
        with self._owner.turn():
            yield self._db

    @property
    def catalog_generation(self) -> int:
        """Changes whenever a function version or a runtime is stored, changed or deleted.

        ``FunctionCatalog`` compares it on each lookup: an int comparison on the event
        path instead of a query, and a cache that cannot outlive what it was built from.
        """
        return self._generation

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing: a failure inside leaves the stored state as it was."""
        with self._owner.turn():
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")
            finally:
                self._depth = 0

    # -- tokens ----------------------------------------------------------------------

    @owned
    def add_token(self, record: TokenRecord) -> None:
        self._db.execute("INSERT INTO tokens VALUES (?, ?, ?, ?, ?)", astuple_of(record))

    @owned
    def find_token(self, token_hash: str) -> TokenRecord | None:
        row = self._db.execute("SELECT * FROM tokens WHERE hash = ?", (token_hash,)).fetchone()
        return TokenRecord(**dict(row)) if row else None

    @owned
    def list_tokens(self) -> list[TokenRecord]:
        rows = self._db.execute("SELECT * FROM tokens ORDER BY created_at")
        return [TokenRecord(**dict(r)) for r in rows]

    @owned
    def delete_token(self, token_hash: str) -> None:
        self._db.execute("DELETE FROM tokens WHERE hash = ?", (token_hash,))

    @owned
    def count_tokens(self, role: str) -> int:
        return int(
            self._db.execute("SELECT COUNT(*) FROM tokens WHERE role = ?", (role,)).fetchone()[0]
        )

    # -- packages --------------------------------------------------------------------

    @owned
    def insert_package(self, record: PackageRecord) -> None:
        row = asdict(record)
        del row["in_use"]
        row["descriptor"] = json.dumps(record.descriptor) if record.descriptor is not None else None
        row["functions"] = json.dumps(record.functions)
        cols = ", ".join(row)
        self._db.execute(
            f"INSERT INTO packages ({cols}) VALUES ({', '.join('?' * len(row))})",
            tuple(row.values()),
        )

    @owned
    def update_package(self, package_id: str, /, **changes: Any) -> PackageRecord:
        if "descriptor" in changes and changes["descriptor"] is not None:
            changes["descriptor"] = json.dumps(changes["descriptor"])
        if "functions" in changes:
            changes["functions"] = json.dumps(changes["functions"])
        changes["updated_at"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in changes)
        self._db.execute(
            f"UPDATE packages SET {sets} WHERE id = ?", (*changes.values(), package_id)
        )
        record = self.get_package(package_id)
        assert record is not None
        return record

    @owned
    def get_package(self, package_id: str) -> PackageRecord | None:
        row = self._db.execute("SELECT * FROM packages WHERE id = ?", (package_id,)).fetchone()
        return _package(row, self._serving_packages()) if row else None

    @owned
    def list_packages(self, tenant: str | None = None) -> list[PackageRecord]:
        if tenant is None:
            rows = self._db.execute("SELECT * FROM packages ORDER BY created_at")
        else:
            rows = self._db.execute(
                "SELECT * FROM packages WHERE tenant = ? ORDER BY created_at", (tenant,)
            )
        serving = self._serving_packages()
        return [_package(r, serving) for r in rows]

    @owned
    def find_onboarded_app(self, app: str) -> list[PackageRecord]:
        rows = self._db.execute(
            "SELECT * FROM packages WHERE app = ? AND onboarding_state = 'ONBOARDED' ORDER BY created_at",
            (app,),
        )
        serving = self._serving_packages()
        return [_package(r, serving) for r in rows]

    @owned
    def delete_package(self, package_id: str) -> list[VersionKey]:
        """Delete a package, its links and the versions no other package ships; those."""
        with self.transaction():
            deleted = self.unlink_package(package_id)
            self._db.execute("DELETE FROM packages WHERE id = ?", (package_id,))
        return deleted

    # -- function versions and the packages that ship them ------------------------------

    @owned
    def insert_function(self, record: FunctionRecord) -> None:
        row = asdict(record)
        row["descriptor"] = json.dumps(record.descriptor)
        self._db.execute(
            f"INSERT INTO functions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            tuple(row.values()),
        )
        self._generation += 1

    @owned
    def get_function(self, app: str, name: str, version: str) -> FunctionRecord | None:
        row = self._db.execute(
            "SELECT * FROM functions WHERE app = ? AND name = ? AND version = ?",
            (app, name, version),
        ).fetchone()
        return _function(row) if row else None

    @owned
    def list_functions(self, app: str | None = None) -> list[FunctionRecord]:
        if app is None:
            rows = self._db.execute("SELECT * FROM functions ORDER BY app, name, created_at")
        else:
            rows = self._db.execute(
                "SELECT * FROM functions WHERE app = ? ORDER BY name, created_at", (app,)
            )
        return [_function(r) for r in rows]

    @owned
    def link_function(self, package_id: str, app: str, name: str, version: str) -> None:
        """Record that a package ships a stored version; the newest link makes it current."""
        self._db.execute(
            "INSERT INTO package_functions (package_id, app, name, version) VALUES (?, ?, ?, ?)",
            (package_id, app, name, version),
        )

    @owned
    def unlink_package(self, package_id: str) -> list[VersionKey]:
        """Drop a package's links and the versions no other package ships; returns those."""
        with self.transaction():
            keys: list[VersionKey] = [
                (r["app"], r["name"], r["version"])
                for r in self._db.execute(
                    "SELECT app, name, version FROM package_functions WHERE package_id = ? "
                    "ORDER BY seq",
                    (package_id,),
                )
            ]
            self._db.execute("DELETE FROM package_functions WHERE package_id = ?", (package_id,))
            deleted: list[VersionKey] = []
            for key in keys:
                holder = self._db.execute(
                    "SELECT package_id FROM package_functions "
                    "WHERE app = ? AND name = ? AND version = ? ORDER BY seq DESC LIMIT 1",
                    key,
                ).fetchone()
                if holder is None:
                    self._db.execute(
                        "DELETE FROM functions WHERE app = ? AND name = ? AND version = ?", key
                    )
                    deleted.append(key)
                else:
                    self._db.execute(
                        "UPDATE functions SET package_id = ? "
                        "WHERE app = ? AND name = ? AND version = ? AND package_id = ?",
                        (holder[0], *key, package_id),
                    )
            if deleted:
                self._generation += 1
        return deleted

    @owned
    def delete_unreferenced_functions(self) -> list[VersionKey]:
        """Delete versions no package ships (left by a state file of the first schema)."""
        with self.transaction():
            keys: list[VersionKey] = [
                (r["app"], r["name"], r["version"])
                for r in self._db.execute(
                    "SELECT app, name, version FROM functions f WHERE NOT EXISTS ("
                    "SELECT 1 FROM package_functions l "
                    "WHERE l.app = f.app AND l.name = f.name AND l.version = f.version) "
                    "ORDER BY app, name, version"
                )
            ]
            for key in keys:
                self._db.execute(
                    "DELETE FROM functions WHERE app = ? AND name = ? AND version = ?", key
                )
            if keys:
                self._generation += 1
        return keys

    @owned
    def serving_versions(self, enabled_only: bool = True) -> dict[FunctionKey, list[str]]:
        """Per function, the versions packages ship, the newest onboarded package's first.

        Only ONBOARDED packages count, and with ``enabled_only`` only ENABLED ones; a
        function no such package ships is absent. The first version is the current one
        (EVE025 7.2.5: an update's version takes the events); the others are what a
        rollback or a weighted policy may choose from.
        """
        out: dict[FunctionKey, list[str]] = {}
        for link in self._links(enabled_only):
            versions = out.setdefault((link["app"], link["name"]), [])
            if link["version"] not in versions:
                versions.append(link["version"])
        return out

    @owned
    def current_versions(self, enabled_only: bool = True) -> dict[FunctionKey, str]:
        """The version each function's events go to; see ``serving_versions``."""
        return {key: versions[0] for key, versions in self.serving_versions(enabled_only).items()}

    def _links(self, enabled_only: bool) -> list[sqlite3.Row]:
        enabled = "AND p.operational_state = 'ENABLED'" if enabled_only else ""
        return self._db.execute(
            "SELECT l.package_id, l.app, l.name, l.version "
            "FROM package_functions l JOIN packages p ON p.id = l.package_id "
            f"WHERE p.onboarding_state = 'ONBOARDED' {enabled} ORDER BY l.seq DESC"
        ).fetchall()

    def _serving_packages(self) -> set[str]:
        """The packages that ship at least one function's current version."""
        seen: set[FunctionKey] = set()
        packages: set[str] = set()
        for link in self._links(enabled_only=True):
            key = (link["app"], link["name"])
            if key not in seen:
                seen.add(key)
                packages.add(link["package_id"])
        return packages

    # -- runtimes (FRSR) ---------------------------------------------------------------

    @owned
    def upsert_runtime(self, record: RuntimeRecord) -> None:
        self._db.execute(
            "INSERT INTO runtimes (name, version, backend, description, builtin, "
            "sandbox_memory_mb, created_at, artefacts) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (name, version) DO UPDATE SET backend = excluded.backend, "
            "description = excluded.description, sandbox_memory_mb = excluded.sandbox_memory_mb, "
            "artefacts = excluded.artefacts",
            (*astuple_of(record)[:-1], json.dumps(record.artefacts, sort_keys=True)),
        )
        self._generation += 1

    @owned
    def get_runtime(self, name: str, version: str) -> RuntimeRecord | None:
        row = self._db.execute(
            "SELECT * FROM runtimes WHERE name = ? AND version = ?", (name, version)
        ).fetchone()
        return _runtime(row) if row else None

    @owned
    def list_runtimes(self, name: str | None = None) -> list[RuntimeRecord]:
        if name is None:
            rows = self._db.execute("SELECT * FROM runtimes ORDER BY name, version")
        else:
            rows = self._db.execute(
                "SELECT * FROM runtimes WHERE name = ? ORDER BY version", (name,)
            )
        return [_runtime(r) for r in rows]

    @owned
    def delete_runtime(self, name: str, version: str) -> None:
        self._db.execute("DELETE FROM runtimes WHERE name = ? AND version = ?", (name, version))
        self._generation += 1

    # -- pools ---------------------------------------------------------------------------

    @owned
    def upsert_pool(self, record: PoolRecord) -> None:
        self._db.execute(
            "INSERT INTO pools VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET size = excluded.size",
            astuple_of(record),
        )

    @owned
    def list_pools(self) -> list[PoolRecord]:
        return [PoolRecord(**dict(r)) for r in self._db.execute("SELECT * FROM pools ORDER BY id")]

    @owned
    def delete_pool(self, pool_id: str) -> None:
        self._db.execute("DELETE FROM pools WHERE id = ?", (pool_id,))

    # -- settings --------------------------------------------------------------------------

    @owned
    def get_setting(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    @owned
    def set_setting(self, key: str, value: Any) -> None:
        self._db.execute(
            "INSERT INTO settings VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )


def astuple_of(record: Any) -> tuple[Any, ...]:
    return tuple(asdict(record).values())


def _package(row: sqlite3.Row, serving: set[str]) -> PackageRecord:
    data = dict(row)
    data["descriptor"] = json.loads(data["descriptor"]) if data["descriptor"] else None
    data["functions"] = json.loads(data["functions"])
    return PackageRecord(**data, in_use=data["id"] in serving)


def _function(row: sqlite3.Row) -> FunctionRecord:
    data = dict(row)
    data["descriptor"] = json.loads(data["descriptor"])
    return FunctionRecord(**data)


def _runtime(row: sqlite3.Row) -> RuntimeRecord:
    data = dict(row)
    data["builtin"] = bool(data["builtin"])
    data["artefacts"] = json.loads(data["artefacts"])
    return RuntimeRecord(**data)
