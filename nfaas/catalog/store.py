"""The platform's durable state in one SQLite file.

Packages, function versions (the internal code repository of 7.2.5, keyed by
name and version), runtimes (the FRSR of 7.2.1), pools and tokens. Instances
are not stored: they are recreated on demand after a restart.

SQLite's own module is used synchronously on purpose: every call here is a
management operation of well under a millisecond (WAL mode), none sits on the
event path, and a thread hop per call would cost more than the query.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY, tenant TEXT NOT NULL, role TEXT NOT NULL,
    name TEXT NOT NULL, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS packages (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, kind TEXT, app TEXT, version TEXT,
    onboarding_state TEXT NOT NULL, operational_state TEXT NOT NULL,
    sha256 TEXT, error TEXT, descriptor TEXT, functions TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS packages_app_version
    ON packages (app, version) WHERE kind = 'application' AND onboarding_state = 'ONBOARDED';
CREATE TABLE IF NOT EXISTS functions (
    app TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL, tenant TEXT NOT NULL,
    package_id TEXT NOT NULL, descriptor TEXT NOT NULL, code_tree TEXT NOT NULL,
    compiled TEXT, created_at REAL NOT NULL,
    PRIMARY KEY (app, name, version)
);
CREATE TABLE IF NOT EXISTS current_versions (
    app TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL,
    PRIMARY KEY (app, name)
);
CREATE TABLE IF NOT EXISTS runtimes (
    name TEXT NOT NULL, version TEXT NOT NULL, backend TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '', builtin INTEGER NOT NULL DEFAULT 0,
    sandbox_memory_mb INTEGER NOT NULL DEFAULT 16, created_at REAL NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS pools (
    id TEXT PRIMARY KEY, runtime_name TEXT NOT NULL, runtime_version TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class TokenRecord:
    hash: str
    tenant: str
    role: str
    name: str
    created_at: float


@dataclass(frozen=True)
class PackageRecord:
    id: str
    tenant: str
    onboarding_state: str
    operational_state: str
    created_at: float
    updated_at: float
    kind: str | None = None
    app: str | None = None
    version: str | None = None
    sha256: str | None = None
    error: str | None = None
    descriptor: dict[str, Any] | None = None
    functions: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FunctionRecord:
    app: str
    name: str
    version: str
    tenant: str
    package_id: str
    descriptor: dict[str, Any]
    code_tree: str
    compiled: str | None
    created_at: float


@dataclass(frozen=True)
class RuntimeRecord:
    name: str
    version: str
    backend: str
    description: str = ""
    builtin: bool = False
    sandbox_memory_mb: int = 16
    created_at: float = 0.0

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class PoolRecord:
    id: str
    runtime_name: str
    runtime_version: str
    size: int


class StateStore:
    """Typed access to the SQLite state; one connection, used from the event loop's thread."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        self._depth = 0

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing: a failure inside leaves the stored state as it was."""
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

    def add_token(self, record: TokenRecord) -> None:
        self._db.execute("INSERT INTO tokens VALUES (?, ?, ?, ?, ?)", astuple_of(record))

    def find_token(self, token_hash: str) -> TokenRecord | None:
        row = self._db.execute("SELECT * FROM tokens WHERE hash = ?", (token_hash,)).fetchone()
        return TokenRecord(**dict(row)) if row else None

    def count_tokens(self, role: str) -> int:
        return int(
            self._db.execute("SELECT COUNT(*) FROM tokens WHERE role = ?", (role,)).fetchone()[0]
        )

    # -- packages --------------------------------------------------------------------

    def insert_package(self, record: PackageRecord) -> None:
        row = asdict(record)
        row["descriptor"] = json.dumps(record.descriptor) if record.descriptor is not None else None
        row["functions"] = json.dumps(record.functions)
        cols = ", ".join(row)
        self._db.execute(
            f"INSERT INTO packages ({cols}) VALUES ({', '.join('?' * len(row))})",
            tuple(row.values()),
        )

    def update_package(self, package_id: str, **changes: Any) -> PackageRecord:
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

    def get_package(self, package_id: str) -> PackageRecord | None:
        row = self._db.execute("SELECT * FROM packages WHERE id = ?", (package_id,)).fetchone()
        return _package(row) if row else None

    def list_packages(self, tenant: str | None = None) -> list[PackageRecord]:
        if tenant is None:
            rows = self._db.execute("SELECT * FROM packages ORDER BY created_at")
        else:
            rows = self._db.execute(
                "SELECT * FROM packages WHERE tenant = ? ORDER BY created_at", (tenant,)
            )
        return [_package(r) for r in rows]

    def find_onboarded_app(self, app: str) -> list[PackageRecord]:
        rows = self._db.execute(
            "SELECT * FROM packages WHERE app = ? AND onboarding_state = 'ONBOARDED' ORDER BY created_at",
            (app,),
        )
        return [_package(r) for r in rows]

    def delete_package(self, package_id: str) -> None:
        self._db.execute("DELETE FROM packages WHERE id = ?", (package_id,))

    # -- function versions -----------------------------------------------------------

    def insert_function(self, record: FunctionRecord) -> None:
        row = asdict(record)
        row["descriptor"] = json.dumps(record.descriptor)
        self._db.execute(
            f"INSERT INTO functions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            tuple(row.values()),
        )

    def get_function(self, app: str, name: str, version: str) -> FunctionRecord | None:
        row = self._db.execute(
            "SELECT * FROM functions WHERE app = ? AND name = ? AND version = ?",
            (app, name, version),
        ).fetchone()
        return _function(row) if row else None

    def list_functions(self, app: str | None = None) -> list[FunctionRecord]:
        if app is None:
            rows = self._db.execute("SELECT * FROM functions ORDER BY app, name, created_at")
        else:
            rows = self._db.execute(
                "SELECT * FROM functions WHERE app = ? ORDER BY name, created_at", (app,)
            )
        return [_function(r) for r in rows]

    def delete_functions_of_package(self, package_id: str) -> None:
        self._db.execute("DELETE FROM functions WHERE package_id = ?", (package_id,))

    def set_current(self, app: str, name: str, version: str) -> None:
        self._db.execute(
            "INSERT INTO current_versions VALUES (?, ?, ?) "
            "ON CONFLICT (app, name) DO UPDATE SET version = excluded.version",
            (app, name, version),
        )

    def current_versions(self) -> dict[tuple[str, str], str]:
        rows = self._db.execute("SELECT app, name, version FROM current_versions")
        return {(r["app"], r["name"]): r["version"] for r in rows}

    def delete_current(self, app: str) -> None:
        self._db.execute("DELETE FROM current_versions WHERE app = ?", (app,))

    # -- runtimes (FRSR) ---------------------------------------------------------------

    def upsert_runtime(self, record: RuntimeRecord) -> None:
        self._db.execute(
            "INSERT INTO runtimes VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name, version) DO UPDATE "
            "SET backend = excluded.backend, description = excluded.description, "
            "sandbox_memory_mb = excluded.sandbox_memory_mb",
            astuple_of(record),
        )

    def get_runtime(self, name: str, version: str) -> RuntimeRecord | None:
        row = self._db.execute(
            "SELECT * FROM runtimes WHERE name = ? AND version = ?", (name, version)
        ).fetchone()
        return _runtime(row) if row else None

    def list_runtimes(self, name: str | None = None) -> list[RuntimeRecord]:
        if name is None:
            rows = self._db.execute("SELECT * FROM runtimes ORDER BY name, version")
        else:
            rows = self._db.execute(
                "SELECT * FROM runtimes WHERE name = ? ORDER BY version", (name,)
            )
        return [_runtime(r) for r in rows]

    def delete_runtime(self, name: str, version: str) -> None:
        self._db.execute("DELETE FROM runtimes WHERE name = ? AND version = ?", (name, version))

    # -- pools ---------------------------------------------------------------------------

    def upsert_pool(self, record: PoolRecord) -> None:
        self._db.execute(
            "INSERT INTO pools VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET size = excluded.size",
            astuple_of(record),
        )

    def list_pools(self) -> list[PoolRecord]:
        return [PoolRecord(**dict(r)) for r in self._db.execute("SELECT * FROM pools ORDER BY id")]

    def delete_pool(self, pool_id: str) -> None:
        self._db.execute("DELETE FROM pools WHERE id = ?", (pool_id,))

    # -- settings --------------------------------------------------------------------------

    def get_setting(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_setting(self, key: str, value: Any) -> None:
        self._db.execute(
            "INSERT INTO settings VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )


def astuple_of(record: Any) -> tuple[Any, ...]:
    return tuple(asdict(record).values())


def _package(row: sqlite3.Row) -> PackageRecord:
    data = dict(row)
    data["descriptor"] = json.loads(data["descriptor"]) if data["descriptor"] else None
    data["functions"] = json.loads(data["functions"])
    return PackageRecord(**data)


def _function(row: sqlite3.Row) -> FunctionRecord:
    data = dict(row)
    data["descriptor"] = json.loads(data["descriptor"])
    return FunctionRecord(**data)


def _runtime(row: sqlite3.Row) -> RuntimeRecord:
    data = dict(row)
    data["builtin"] = bool(data["builtin"])
    return RuntimeRecord(**data)
