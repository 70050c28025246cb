"""The SQLite schema of the state store, and its upgrade from older state files.

``PRAGMA user_version`` holds the schema's version. Version 0 with tables in the
file is the first schema, which had no link table: each function version
belonged to the one package that first stored it, and a ``current_versions``
table held one pointer per function. Version 2 gave runtimes their artefacts
(a JSON object, empty for the runtimes stored before). Version 3 added the
version-mapping policies (EVE025 7.2.5), the subscriptions and the outbox of
notifications not yet delivered (gap #5.2); the upgrade only creates them.
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 3

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
-- Which packages ship which function versions. A version lives while one package
-- links it (the foreign key refuses deleting it before); seq orders the links by
-- onboarding, so the newest onboarded package's version is a function's current one.
CREATE TABLE IF NOT EXISTS package_functions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    package_id TEXT NOT NULL REFERENCES packages (id) ON DELETE CASCADE,
    app TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL,
    UNIQUE (package_id, app, name),
    FOREIGN KEY (app, name, version) REFERENCES functions (app, name, version)
);
CREATE INDEX IF NOT EXISTS package_functions_version
    ON package_functions (app, name, version);
CREATE TABLE IF NOT EXISTS runtimes (
    name TEXT NOT NULL, version TEXT NOT NULL, backend TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '', builtin INTEGER NOT NULL DEFAULT 0,
    sandbox_memory_mb INTEGER NOT NULL DEFAULT 16, created_at REAL NOT NULL,
    artefacts TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS pools (
    id TEXT PRIMARY KEY, runtime_name TEXT NOT NULL, runtime_version TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- A function's version-mapping policy (7.2.5); without a row, the newest version serves.
CREATE TABLE IF NOT EXISTS version_policies (
    app TEXT NOT NULL, name TEXT NOT NULL, weights TEXT NOT NULL, stable TEXT NOT NULL,
    sticky TEXT, rollback_rule TEXT, last_rollback TEXT, updated_at REAL NOT NULL,
    PRIMARY KEY (app, name)
);
CREATE TABLE IF NOT EXISTS subscriptions (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, callback TEXT NOT NULL, filter TEXT NOT NULL,
    secret TEXT, state TEXT NOT NULL, delivered INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0, last_error TEXT, created_at REAL NOT NULL
);
-- Notifications not yet delivered: kept across restarts until delivered or given up.
CREATE TABLE IF NOT EXISTS notification_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id TEXT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    body TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL,
    created_at REAL NOT NULL
)
"""

# Version 0 -> 1: each stored version is linked to the package that stored it, the
# versions the old pointers named last, so they stay current; the pointers go.
_LINK_STORED_VERSIONS = """
INSERT OR IGNORE INTO package_functions (package_id, app, name, version)
SELECT f.package_id, f.app, f.name, f.version
FROM functions f JOIN packages p ON p.id = f.package_id
WHERE p.onboarding_state = 'ONBOARDED'
ORDER BY EXISTS (
    SELECT 1 FROM current_versions c
    WHERE c.app = f.app AND c.name = f.name AND c.version = f.version
), f.created_at
"""


def prepare(db: sqlite3.Connection) -> None:
    """Create the schema, or bring an older state file up to it, in one transaction."""
    found = int(db.execute("PRAGMA user_version").fetchone()[0])
    if found > SCHEMA_VERSION:
        raise RuntimeError(
            f"the state file has schema version {found}; this nfaas knows up to "
            f"{SCHEMA_VERSION}: upgrade nfaas"
        )
    if found == SCHEMA_VERSION:
        return
    unversioned = _has_table(db, "packages")
    db.execute("BEGIN IMMEDIATE")
    try:
        for statement in SCHEMA.split(";\n"):
            db.execute(statement)
        if unversioned and _has_table(db, "current_versions"):
            db.execute(_LINK_STORED_VERSIONS)
            db.execute("DROP TABLE current_versions")
        columns = {row[1] for row in db.execute("PRAGMA table_info(runtimes)")}
        if "artefacts" not in columns:  # version 1 -> 2
            db.execute("ALTER TABLE runtimes ADD COLUMN artefacts TEXT NOT NULL DEFAULT '{}'")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    row = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return row.fetchone() is not None
