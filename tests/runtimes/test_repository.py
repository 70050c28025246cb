"""The FaaS Runtime Software Repository (EVE025 7.2.1)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nfaas.catalog.store import PoolRecord, StateStore
from nfaas.errors import Conflict, NotFound
from nfaas.runtimes.repository import RuntimeRepository, default_pool_id


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[RuntimeRepository]:
    store = StateStore(tmp_path / "state.db")
    yield RuntimeRepository(store)
    store.close()


def test_delete_returns_the_pools_the_platform_must_close(repo: RuntimeRepository) -> None:
    repo.register_builtins()
    repo.create("go", "1", "process")
    store = repo._store
    store.upsert_pool(PoolRecord("go-warm", "go", "1", 3))
    store.upsert_pool(PoolRecord("go-cold", "go", "1", 0))
    assert sorted(repo.delete("go", "1")) == ["go-cold", "go-warm"]
    assert {p.id for p in store.list_pools()} == {
        default_pool_id("python", "3.11"),
        default_pool_id("wasm", "1"),
    }
    with pytest.raises(NotFound):
        repo.get("go", "1")


def test_delete_of_a_runtime_without_pools_returns_none_of_them(repo: RuntimeRepository) -> None:
    repo.create("go", "1", "process")
    assert repo.delete("go", "1") == []


def test_pools_of_names_a_runtimes_pools(repo: RuntimeRepository) -> None:
    repo.register_builtins()
    assert repo.pools_of("python", "3.11") == [default_pool_id("python", "3.11")]
    with pytest.raises(NotFound):
        repo.pools_of("cobol", "85")


def test_a_runtime_in_use_is_not_deleted(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    repo = RuntimeRepository(store)
    repo.create("go", "1", "process")
    store.upsert_pool(PoolRecord("go-warm", "go", "1", 1))
    from tests.catalog.test_store import store_function

    store_function(store, "demo", "f", "1.0.0", runtime=("go", "1"))
    with pytest.raises(Conflict, match=r"used by demo/f@1\.0\.0"):
        repo.delete("go", "1")
    assert [p.id for p in store.list_pools()] == ["go-warm"]
    store.close()
