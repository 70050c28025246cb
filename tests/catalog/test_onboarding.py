"""Onboarding (SOL005 states): what is stored, what serves, and what a failure leaves."""

from __future__ import annotations

import asyncio

import pytest

from nfaas.catalog.onboarding import usage_state
from nfaas.errors import Conflict, NotFound, PackageInUse
from tests.catalog.conftest import Catalog, code_of
from tests.helpers import function_doc

OTHER_CODE = "def handle(event, context):\n    return b'fixed'\n"

# -- which package owns which version (issue 2) ---------------------------------------


async def test_deleting_an_old_package_keeps_versions_a_newer_one_uses(cat: Catalog) -> None:
    v1 = await cat.app("demo", ["echo", "upper"], version="1.0.0")
    # v2 ships echo@1.0.0 unchanged and a new upper.
    fns = [function_doc("echo"), function_doc("upper", version="2.0.0")]
    data = cat.package("demo", fns, version="2.0.0")
    await cat.onboarding.onboard(data, "acme", expect="application")
    assert await cat.remove(v1) == [("demo", "upper", "1.0.0")]
    assert cat.store.get_function("demo", "echo", "1.0.0") is not None
    assert cat.store.current_versions() == {
        ("demo", "echo"): "1.0.0",
        ("demo", "upper"): "2.0.0",
    }
    assert cat.catalog.version("demo", "echo", "1.0.0").version == "1.0.0"


async def test_disabling_the_newest_package_falls_back_to_an_enabled_one(cat: Catalog) -> None:
    app = await cat.app("demo", ["echo"])
    update = await cat.update("demo", "echo", "2.0.0")
    assert cat.store.current_versions() == {("demo", "echo"): "2.0.0"}
    cat.onboarding.set_operational_state(update.id, "DISABLED", None)
    assert cat.store.current_versions() == {("demo", "echo"): "1.0.0"}
    cat.onboarding.set_operational_state(app.id, "DISABLED", None)
    assert cat.store.current_versions() == {}
    # What would serve if everything were enabled: the explicit pointer of the newest.
    assert cat.store.current_versions(enabled_only=False) == {("demo", "echo"): "2.0.0"}
    cat.onboarding.set_operational_state(update.id, "ENABLED", None)
    assert cat.store.current_versions() == {("demo", "echo"): "2.0.0"}


async def test_newest_onboarded_wins_even_over_a_higher_version(cat: Catalog) -> None:
    await cat.app("demo", ["echo"], fn_version="3.0.0")
    await cat.update("demo", "echo", "2.0.0")  # a rollback is a new package too
    assert cat.store.serving_versions() == {("demo", "echo"): ["2.0.0", "3.0.0"]}
    assert cat.store.current_versions() == {("demo", "echo"): "2.0.0"}


async def test_usage_state_says_which_packages_serve(cat: Catalog) -> None:
    app = await cat.app("demo", ["echo"])
    assert usage_state(cat.onboarding.get(app.id, None)) == "IN_USE"
    update = await cat.update("demo", "echo", "2.0.0")
    assert usage_state(update) == "IN_USE"
    # Every function of the application package is superseded: it serves nothing.
    assert usage_state(cat.onboarding.get(app.id, None)) == "NOT_IN_USE"
    disabled = cat.onboarding.set_operational_state(update.id, "DISABLED", None)
    assert usage_state(disabled) == "NOT_IN_USE"
    assert usage_state(cat.onboarding.get(app.id, None)) == "IN_USE"


async def test_an_enabled_package_is_not_deleted(cat: Catalog) -> None:
    app = await cat.app("demo", ["echo"])
    with pytest.raises(PackageInUse, match="disable it first"):
        await cat.onboarding.delete(app.id, None)


async def test_a_package_being_onboarded_is_not_deleted(cat: Catalog) -> None:
    cat.backend.compile_delay = 0.2
    created = cat.onboarding.create("acme")
    upload = asyncio.create_task(
        cat.onboarding.upload(created.id, cat.package("demo", [function_doc("echo")]), "acme")
    )
    await cat.backend.compiling.wait()
    with pytest.raises(Conflict, match="is being onboarded"):
        await cat.onboarding.delete(created.id, "acme")
    assert (await upload).onboarding_state == "ONBOARDED"


# -- a failure after the package was stored (issue 3) --------------------------------


async def test_a_failing_on_change_withdraws_everything_the_package_stored(
    cat: Catalog,
) -> None:
    await cat.app("other", ["g"])
    cat.change_error = RuntimeError("listener would not start")
    with pytest.raises(RuntimeError, match="listener would not start"):
        await cat.app("demo", ["echo", "upper"])
    assert [p.app for p in cat.store.list_packages()] == ["other"]
    assert [(f.app, f.name) for f in cat.store.list_functions()] == [("other", "g")]
    assert cat.store.current_versions(enabled_only=False) == {("other", "g"): "1.0.0"}
    # on_change ran again after the withdrawal, to put the platform back as it was.
    assert cat.changes == 3
    # Same name and version with corrected code: nothing of the failed attempt is in the way.
    cat.change_error = None
    await cat.app("demo", ["echo", "upper"], code=code_of(OTHER_CODE, "echo", "upper"))
    assert cat.store.current_versions() == {
        ("other", "g"): "1.0.0",
        ("demo", "echo"): "1.0.0",
        ("demo", "upper"): "1.0.0",
    }


async def test_a_failed_upload_keeps_the_reason_and_nothing_else(cat: Catalog) -> None:
    created = cat.onboarding.create("acme")
    data = cat.package("demo", [function_doc("echo")])
    cat.change_error = RuntimeError("no listener")
    with pytest.raises(RuntimeError):
        await cat.onboarding.upload(created.id, data, "acme")
    record = cat.onboarding.get(created.id, "acme")
    assert record.onboarding_state == "ERROR" and "no listener" in (record.error or "")
    assert record.operational_state == "DISABLED" and usage_state(record) == "NOT_IN_USE"
    assert cat.store.list_functions() == []
    assert cat.store.current_versions(enabled_only=False) == {}


async def test_a_cancelled_onboarding_leaves_nothing_behind(cat: Catalog) -> None:
    cat.change_delay = 10
    task = asyncio.create_task(cat.app("demo", ["echo"]))
    await cat.changing.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cat.store.list_packages() == []
    assert cat.store.list_functions() == []
    cat.change_delay = 0
    await cat.app("demo", ["echo"], code=code_of(OTHER_CODE, "echo"))


async def test_packages_interrupted_by_a_restart_are_put_in_error(cat: Catalog) -> None:
    done = await cat.app("demo", ["echo"])
    stuck = [cat.onboarding.create("acme") for _ in range(3)]
    cat.store.update_package(stuck[0].id, onboarding_state="UPLOADING")
    cat.store.update_package(stuck[1].id, onboarding_state="PROCESSING")
    recovery = cat.onboarding.recover()
    assert sorted(recovery.interrupted) == sorted([stuck[0].id, stuck[1].id])
    for record in stuck[:2]:
        after = cat.onboarding.get(record.id, None)
        assert after.onboarding_state == "ERROR"
        assert after.error == "interrupted by a platform restart"
    assert cat.onboarding.get(stuck[2].id, None).onboarding_state == "CREATED"
    assert cat.onboarding.get(done.id, None).onboarding_state == "ONBOARDED"
    assert cat.onboarding.recover().interrupted == []


# -- two onboardings at once (issue 4) -------------------------------------------------


@pytest.mark.parametrize(
    ("names", "versions"),
    [(("echo", "upper"), ("1.0.0", "2.0.0")), (("echo", "echo"), ("1.0.0", "1.0.0"))],
)
async def test_two_tenants_racing_for_one_app_name_one_wins(
    cat: Catalog, names: tuple[str, str], versions: tuple[str, str]
) -> None:
    """Checked before a slow compile and stored after it: the check must still hold."""
    cat.backend.compile_delay = 0.2
    results = await asyncio.gather(
        cat.app("demo", [names[0]], tenant="acme", version=versions[0]),
        cat.app(
            "demo",
            [names[1]],
            tenant="globex",
            version=versions[1],
            code=code_of(OTHER_CODE, names[1]),
        ),
        return_exceptions=True,
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1 and len(lost) == 1
    assert isinstance(lost[0], Conflict), repr(lost[0])
    assert "taken by another provider" in str(lost[0])
    assert {f.tenant for f in cat.store.list_functions()} == {won[0].tenant}
    assert [p.tenant for p in cat.store.list_packages()] == [won[0].tenant]


# -- application ownership (issue 6) ----------------------------------------------------


async def test_a_function_package_cannot_enter_another_tenants_app(cat: Catalog) -> None:
    await cat.app("demo", ["echo"], tenant="acme")
    with pytest.raises(Conflict, match="taken by another provider"):
        await cat.update("demo", "echo", "2.0.0", tenant="globex")
    with pytest.raises(Conflict, match="taken by another provider"):
        await cat.update("demo", "intruder", "1.0.0", tenant="globex")
    assert [(f.name, f.version, f.tenant) for f in cat.store.list_functions()] == [
        ("echo", "1.0.0", "acme")
    ]
    assert cat.store.current_versions() == {("demo", "echo"): "1.0.0"}


async def test_an_application_is_deleted_after_its_function_packages(cat: Catalog) -> None:
    app = await cat.app("demo", ["echo"])
    update = await cat.update("demo", "echo", "2.0.0")
    cat.onboarding.set_operational_state(update.id, "DISABLED", None)
    with pytest.raises(Conflict, match=f"function packages {update.id}"):
        await cat.remove(app)
    assert cat.store.get_function("demo", "echo", "1.0.0") is not None
    await cat.onboarding.delete(update.id, None)
    await cat.onboarding.delete(app.id, None)
    with pytest.raises(NotFound, match="no application 'demo' is onboarded"):
        await cat.update("demo", "echo", "3.0.0")
    assert cat.store.list_functions() == []
    assert cat.store.list_packages() == []
