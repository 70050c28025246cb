"""StateStore: links between packages and versions, schema upgrade, one thread at a time."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from nfaas.catalog.store import FunctionRecord, PackageRecord, StateStore, StoreThreadError


def store_function(
    store: StateStore,
    app: str,
    name: str,
    version: str,
    *,
    runtime: tuple[str, str] = ("mock", "1"),
    tenant: str = "acme",
    package_id: str | None = None,
) -> str:
    """A function version stored by an ONBOARDED, ENABLED package; the package's id."""
    package_id = package_id or f"pkg-{app}-{name}-{version}"
    now = time.time()
    with store.transaction():
        if store.get_package(package_id) is None:
            store.insert_package(
                PackageRecord(
                    id=package_id,
                    tenant=tenant,
                    onboarding_state="ONBOARDED",
                    operational_state="ENABLED",
                    created_at=now,
                    updated_at=now,
                    kind="application",
                    app=app,
                    version=package_id,
                )
            )
        store.insert_function(
            FunctionRecord(
                app=app,
                name=name,
                version=version,
                tenant=tenant,
                package_id=package_id,
                descriptor={"runtime": {"name": runtime[0], "version": runtime[1]}},
                code_tree="0" * 64,
                compiled=None,
                created_at=now,
            )
        )
        store.link_function(package_id, app, name, version)
    return package_id


def test_a_version_another_package_uses_outlives_its_first_package(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    first = store_function(store, "demo", "f", "1.0.0", package_id="first")
    second = store_function(store, "demo", "g", "1.0.0", package_id="second")
    store.link_function(second, "demo", "f", "1.0.0")
    assert store.delete_package(first) == []
    kept = store.get_function("demo", "f", "1.0.0")
    assert kept is not None and kept.package_id == second
    assert sorted(store.delete_package(second)) == [("demo", "f", "1.0.0"), ("demo", "g", "1.0.0")]
    assert store.list_functions() == []
    store.close()


def test_a_linked_version_cannot_be_removed_behind_the_links_back(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    store_function(store, "demo", "f", "1.0.0")
    with pytest.raises(sqlite3.IntegrityError):
        store._db.execute("DELETE FROM functions")
    store.close()


OLD_SCHEMA = """
CREATE TABLE packages (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, kind TEXT, app TEXT, version TEXT,
    onboarding_state TEXT NOT NULL, operational_state TEXT NOT NULL,
    sha256 TEXT, error TEXT, descriptor TEXT, functions TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE functions (
    app TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL, tenant TEXT NOT NULL,
    package_id TEXT NOT NULL, descriptor TEXT NOT NULL, code_tree TEXT NOT NULL,
    compiled TEXT, created_at REAL NOT NULL,
    PRIMARY KEY (app, name, version)
);
CREATE TABLE current_versions (
    app TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL,
    PRIMARY KEY (app, name)
);
"""


def test_a_state_file_of_the_first_schema_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    for pid, kind in [("app", "application"), ("update", "function")]:
        db.execute(
            "INSERT INTO packages VALUES (?, 'acme', ?, 'demo', '1.0.0', 'ONBOARDED', 'ENABLED',"
            " NULL, NULL, NULL, '[]', 1, 1)",
            (pid, kind),
        )
    # f@2.0.0 was stored before f@1.0.0 but the pointer says 2.0.0 is current; g@1.0.0
    # was left behind by a package deleted without its functions.
    for name, version, pid, at in [
        ("f", "2.0.0", "update", 1),
        ("f", "1.0.0", "app", 2),
        ("g", "1.0.0", "gone", 3),
    ]:
        db.execute(
            "INSERT INTO functions VALUES ('demo', ?, ?, 'acme', ?, '{}', 'tree', NULL, ?)",
            (name, version, pid, at),
        )
    db.execute("INSERT INTO current_versions VALUES ('demo', 'f', '2.0.0')")
    db.commit()
    db.close()

    store = StateStore(path)
    assert store.current_versions() == {("demo", "f"): "2.0.0"}
    assert store.serving_versions() == {("demo", "f"): ["2.0.0", "1.0.0"]}
    assert store.delete_unreferenced_functions() == [("demo", "g", "1.0.0")]
    tables = {r[0] for r in store._db.execute("SELECT name FROM sqlite_master")}
    assert "current_versions" not in tables
    store.close()
    # Opening it again changes nothing.
    store = StateStore(path)
    assert store.current_versions() == {("demo", "f"): "2.0.0"}
    store.close()


def test_runtimes_of_schema_version_1_get_empty_artefacts(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE runtimes (name TEXT NOT NULL, version TEXT NOT NULL, backend TEXT NOT NULL,"
        " description TEXT NOT NULL DEFAULT '', builtin INTEGER NOT NULL DEFAULT 0,"
        " sandbox_memory_mb INTEGER NOT NULL DEFAULT 16, created_at REAL NOT NULL,"
        " PRIMARY KEY (name, version));"
        "INSERT INTO runtimes VALUES ('go', '1', 'process', 'old', 0, 16, 1);"
        "PRAGMA user_version = 1;"
    )
    db.commit()
    db.close()
    store = StateStore(path)
    (runtime,) = store.list_runtimes()
    assert (runtime.ref, runtime.description, runtime.artefacts) == ("go:1", "old", {})
    store.upsert_runtime(dataclasses.replace(runtime, artefacts={"kernel": "/k"}))
    assert store.list_runtimes()[0].artefacts == {"kernel": "/k"}
    store.close()


def test_another_thread_is_refused_and_named(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    errors: list[BaseException] = []

    def use() -> None:
        try:
            store.list_packages()
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=use, name="pool-worker")
    worker.start()
    worker.join()
    assert len(errors) == 1 and isinstance(errors[0], StoreThreadError)
    assert "pool-worker" in str(errors[0])
    assert store.list_packages() == []
    store.close()


def test_serialised_threads_wait_for_a_transaction_instead_of_joining_it(
    tmp_path: Path,
) -> None:
    store = StateStore(tmp_path / "state.db", foreign_threads="serialise")
    seen: list[list[str]] = []
    done = threading.Event()

    def read() -> None:
        seen.append([p.id for p in store.list_packages()])
        done.set()

    with pytest.raises(RuntimeError, match="rolled back"):
        with store.transaction():
            store_function(store, "demo", "f", "1.0.0")
            worker = threading.Thread(target=read)
            worker.start()
            # The reader must not see the uncommitted package, nor run inside this transaction.
            assert not done.wait(0.2)
            raise RuntimeError("rolled back")
    worker.join()
    assert seen == [[]]
    store.close()
