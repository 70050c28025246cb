"""Version-mapping policies through the API: canary, promote, rollback, persistence, bad input."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from nfaas.catalog.schema import SCHEMA_VERSION
from nfaas.catalog.store import StateStore
from tests.canary.kit import Kit, running_kit

POLICY = "/api/v1/functions/demo/fn/policy"


async def two_versions(kit: Kit) -> dict[str, str]:
    await kit.onboard("1.0.0", "v1")
    await kit.onboard("2.0.0", "v2")
    return kit.tenant("acme")


async def test_canary_splits_events_and_promote_and_rollback_move_them(tmp_path: Path) -> None:
    async with running_kit(tmp_path) as kit:
        acme = await two_versions(kit)
        # without a policy the update takes every event (7.2.5)
        assert (await kit.http.get(POLICY, headers=acme)).json()["weights"] == {"2.0.0": 100}
        assert await kit.events(20) == {"v2": 20}
        r = await kit.http.put(POLICY, json={"weights": {"1.0.0": 80, "2.0.0": 20}}, headers=acme)
        assert r.status_code == 200, r.text
        policy = r.json()
        assert (policy["weights"], policy["stable"], policy["canaries"], policy["source"]) == (
            {"2.0.0": 20, "1.0.0": 80},
            "2.0.0",
            ["1.0.0"],
            "stored",
        )
        seen = await kit.events(1000)
        assert set(seen) == {"v1", "v2"} and 700 < seen["v1"] < 900, seen
        live = {d.version.version for d in kit.platform.manager.deployments() if not d.retired}
        assert live == {"1.0.0", "2.0.0"}
        # rollback: every event back to the stable version, recorded
        r = await kit.http.post("/api/v1/functions/demo/fn/rollback", json={"reason": "test"},
                                headers=acme)  # fmt: skip
        assert r.json()["weights"] == {"2.0.0": 100}
        assert r.json()["lastRollback"]["from"] == ["1.0.0"]
        assert r.json()["lastRollback"]["by"] == "manual"
        assert await kit.events(50) == {"v2": 50}
        # promote a named version
        r = await kit.http.post("/api/v1/functions/demo/fn/promote", json={"version": "1.0.0"},
                                headers=acme)  # fmt: skip
        assert (r.json()["weights"], r.json()["stable"]) == ({"1.0.0": 100}, "1.0.0")
        assert await kit.events(20) == {"v1": 20}
        events = (await kit.http.get("/api/v1/events", headers=acme)).json()
        types = [e["notificationType"] for e in events if e["notificationType"].startswith("V")]
        # the newest first: promote, rollback (the event and its policy change), the canary
        assert types == ["VersionPolicyChanged", "VersionRollback", "VersionPolicyChanged",
                         "VersionPolicyChanged"]  # fmt: skip


async def test_a_canary_of_a_new_version_while_the_old_one_is_stable(tmp_path: Path) -> None:
    """Pin v1, onboard v2 (it gets nothing), give it 20 %, promote it."""
    async with running_kit(tmp_path) as kit:
        await kit.onboard("1.0.0", "v1")
        acme = kit.tenant("acme")
        await kit.http.put(POLICY, json={"weights": {"1.0.0": 100}}, headers=acme)
        await kit.onboard("2.0.0", "v2")
        assert await kit.events(30) == {"v1": 30}
        r = await kit.http.put(POLICY, json={"weights": {"1.0.0": 80, "2.0.0": 20}}, headers=acme)
        assert (r.json()["stable"], r.json()["canaries"]) == ("1.0.0", ["2.0.0"])
        r = await kit.http.post("/api/v1/functions/demo/fn/promote", headers=acme)
        assert r.json()["weights"] == {"2.0.0": 100}
        assert await kit.events(10) == {"v2": 10}
        # without a canary, a rollback goes to the previous version
        r = await kit.http.post("/api/v1/functions/demo/fn/rollback", headers=acme)
        assert r.json()["weights"] == {"1.0.0": 100}
        r = await kit.http.delete(POLICY, headers=acme)
        assert (r.json()["weights"], r.json()["source"]) == ({"2.0.0": 100}, "default")


async def test_the_policy_survives_a_restart(tmp_path: Path) -> None:
    async with running_kit(tmp_path) as kit:
        acme = await two_versions(kit)
        body = {"weights": {"1.0.0": 60, "2.0.0": 40}, "sticky": {"source": "header",
                "name": "x-device"}}  # fmt: skip
        assert (await kit.http.put(POLICY, json=body, headers=acme)).status_code == 200
    async with running_kit(tmp_path) as kit:
        policy = kit.platform.distributor.policy("demo", "fn")
        assert policy is not None and dict(policy.weights) == {"1.0.0": 60, "2.0.0": 40}
        assert policy.sticky is not None and policy.sticky.name == "x-device"
        seen = await kit.events(200)
        assert set(seen) == {"v1", "v2"}
        # sticky: the same device lands on the same version every time
        again = await kit.events(200)
        assert again == seen


async def test_bad_policies_are_refused_and_change_nothing(tmp_path: Path) -> None:
    async with running_kit(tmp_path) as kit:
        acme = await two_versions(kit)
        await kit.http.put(POLICY, json={"weights": {"1.0.0": 90, "2.0.0": 10}}, headers=acme)
        before = (await kit.http.get(POLICY, headers=acme)).json()
        cases = [
            ({"weights": {"1.0.0": 90, "2.0.0": 20}}, acme, 400, "invalid-version-policy",
             "weights must sum to 100, not 110 (1.0.0=90, 2.0.0=20)"),
            ({"weights": {"1.0.0": 50, "3.0.0": 50}}, acme, 400, "invalid-version-policy",
             "no serving version 3.0.0; serving: 2.0.0, 1.0.0"),
            ({"weights": {"1.0.0": 50.5, "2.0.0": 49.5}}, acme, 400, "invalid-request", "weights"),
            ({"weights": {"1.0.0": 100}, "rollbackRule": {"metric": "latency"}}, acme, 400,
             "invalid-request", "rollbackRule.metric"),
            ({"weights": {"1.0.0": 100}}, kit.tenant("globex"), 404, "not-found",
             "no enabled function demo/fn"),
        ]  # fmt: skip
        for body, headers, status, kind, detail in cases:
            r = await kit.http.put(POLICY, json=body, headers=headers)
            problem = r.json()
            assert r.status_code == status, problem
            assert r.headers["content-type"] == "application/problem+json"
            assert problem["type"] == f"urn:nfaas:problem:{kind}" and detail in problem["detail"]
        other = kit.tenant("globex")
        for path in ("promote", "rollback"):
            r = await kit.http.post(f"/api/v1/functions/demo/fn/{path}", headers=other)
            assert r.status_code == 404
        assert (await kit.http.delete(POLICY, headers=other)).status_code == 404
        assert (await kit.http.get(POLICY, headers=acme)).json() == before
        r = await kit.http.post("/api/v1/functions/demo/fn/promote", json={"version": "9"},
                                headers=acme)  # fmt: skip
        assert r.status_code == 400 and "no serving version 9" in r.json()["detail"]
        assert (await kit.http.get(POLICY, headers=acme)).json() == before


def test_a_schema_2_state_file_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    StateStore(path).close()
    db = sqlite3.connect(path)
    for table in ("notification_outbox", "subscriptions", "version_policies"):
        db.execute(f"DROP TABLE {table}")
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    store = StateStore(path)
    with store.connection() as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    store.close()
    assert SCHEMA_VERSION == 3 and version == 3
    assert {"version_policies", "subscriptions", "notification_outbox"} <= tables
