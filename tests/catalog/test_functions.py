"""FunctionCatalog: a stored version becomes a runnable FunctionVersion, never a stale one."""

from __future__ import annotations

import pytest

from nfaas.errors import NotFound
from tests.catalog.conftest import Catalog, code_of

ACME_CODE = "def handle(event, context):\n    return b'acme'\n"
GLOBEX_CODE = "def handle(event, context):\n    return b'globex'\n"


async def test_a_deleted_version_is_never_served_again(cat: Catalog) -> None:
    acme = await cat.app("demo", ["f"], tenant="acme", code=code_of(ACME_CODE, "f"))
    old = cat.catalog.version("demo", "f", "1.0.0")
    assert old.tenant == "acme"
    assert await cat.remove(acme) == [("demo", "f", "1.0.0")]
    with pytest.raises(NotFound):
        cat.catalog.version("demo", "f", "1.0.0")
    # The name is free again: another tenant's demo f@1.0.0 is other code.
    await cat.app("demo", ["f"], tenant="globex", code=code_of(GLOBEX_CODE, "f"))
    new = cat.catalog.version("demo", "f", "1.0.0")
    assert new.tenant == "globex"
    assert (new.code.path / "handler.py").read_text() == GLOBEX_CODE


async def test_stale_entry_is_replaced_even_if_never_looked_up_in_between(cat: Catalog) -> None:
    acme = await cat.app("demo", ["f"], tenant="acme", code=code_of(ACME_CODE, "f"))
    cat.catalog.version("demo", "f", "1.0.0")
    await cat.remove(acme)
    await cat.app("demo", ["f"], tenant="globex", code=code_of(GLOBEX_CODE, "f"))
    assert cat.catalog.version("demo", "f", "1.0.0").tenant == "globex"


async def test_an_unchanged_version_keeps_its_identity(cat: Catalog) -> None:
    """The event path compares FunctionVersions by identity: other changes must not renew them."""
    await cat.app("demo", ["f"])
    first = cat.catalog.version("demo", "f", "1.0.0")
    await cat.app("other", ["g"])
    await cat.update("demo", "f", "2.0.0")
    assert cat.catalog.version("demo", "f", "1.0.0") is first


async def test_a_version_whose_runtime_changed_backend_is_rebuilt(cat: Catalog) -> None:
    await cat.app("demo", ["f"])
    first = cat.catalog.version("demo", "f", "1.0.0")
    record = cat.store.get_runtime("mock", "1")
    assert record is not None
    cat.store.upsert_runtime(type(record)(**{**record.__dict__, "backend": "process"}))
    assert cat.catalog.version("demo", "f", "1.0.0").backend == "process"
    assert first.backend == "mock"
