"""Automatic rollback: a canary's error rate or duration against the stable version's."""

from __future__ import annotations

from pathlib import Path

from nfaas.canary.rules import RollbackRule, WindowStats
from nfaas.canary.watcher import RollbackWatcher
from nfaas.canary.window import OutcomeWindows
from tests.canary.kit import Kit, running_kit

POLICY = "/api/v1/functions/demo/fn/policy"
RULE = {"metric": "error_rate", "window_s": 60, "min_events": 20, "max_error_rate_increase": 0.1}


class ManualClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def watcher_on(kit: Kit, clock: ManualClock) -> RollbackWatcher:
    """The platform's mapping and telemetry, with outcome windows on a clock the test moves."""
    windows = OutcomeWindows(clock)
    kit.platform.telemetry.observe(windows.record)
    watcher = RollbackWatcher(kit.platform.versions, windows, kit.platform.store.serving_versions)
    watcher.refresh()
    return watcher


async def canary_of_a_broken_version(kit: Kit) -> dict[str, str]:
    await kit.onboard("1.0.0", "v1")
    acme = kit.tenant("acme")
    await kit.http.put(POLICY, json={"weights": {"1.0.0": 100}}, headers=acme)
    await kit.onboard("2.0.0", "boom")
    body = {"weights": {"1.0.0": 50, "2.0.0": 50}, "rollbackRule": RULE}
    r = await kit.http.put(POLICY, json=body, headers=acme)
    assert r.json()["canaries"] == ["2.0.0"], r.text
    return acme


async def test_a_failing_canary_is_rolled_back_and_the_rollback_recorded(tmp_path: Path) -> None:
    async with running_kit(tmp_path, rollback_check_interval_s=3600) as kit:
        acme = await canary_of_a_broken_version(kit)
        clock = ManualClock()
        watcher = watcher_on(kit, clock)
        seen = await kit.events(100)
        assert set(seen) == {"v1", "FunctionRaised"}
        fired = await watcher.check()
        assert [key for key, _ in fired] == [("demo", "fn")]
        assert "2.0.0: error rate 100.0%" in fired[0][1]
        policy = (await kit.http.get(POLICY, headers=acme)).json()
        assert (policy["weights"], policy["canaries"]) == ({"1.0.0": 100}, [])
        assert policy["lastRollback"]["by"] == "auto"
        assert policy["lastRollback"]["from"] == ["2.0.0"]
        assert policy["rollbackRule"]["metric"] == "error_rate"
        assert await kit.events(50) == {"v1": 50}
        events = (await kit.http.get("/api/v1/events", headers=acme)).json()
        rollback = next(e for e in events if e["notificationType"] == "VersionRollback")
        assert rollback["detail"]["to"] == "1.0.0" and "error rate" in rollback["detail"]["reason"]
        prom = (await kit.http.get("/metrics", headers=kit.operator)).text
        assert 'nfaas_version_rollbacks_total{app="demo",by="auto",function="fn"} 1.0' in prom
        assert 'nfaas_version_weight{app="demo",function="fn",version="1.0.0"} 100.0' in prom
        assert await watcher.check() == []  # nothing left to judge


async def test_old_errors_outside_the_window_and_too_few_events_do_not_fire(
    tmp_path: Path,
) -> None:
    async with running_kit(tmp_path, rollback_check_interval_s=3600) as kit:
        await canary_of_a_broken_version(kit)
        clock = ManualClock()
        watcher = watcher_on(kit, clock)
        await kit.events(100)
        clock.now += 61  # the window has moved past them
        assert await watcher.check() == []
        await kit.events(10)  # about 5 on the canary: under min_events
        assert await watcher.check() == []
        assert dict(kit.platform.distributor.policy("demo", "fn").weights) == {  # type: ignore[union-attr]
            "1.0.0": 50,
            "2.0.0": 50,
        }


def stats(events: int, errors: int, durations_ms: list[float]) -> WindowStats:
    return WindowStats(events, errors, tuple(d / 1000 for d in durations_ms))


def test_the_duration_rule_compares_percentiles() -> None:
    rule = RollbackRule(metric="duration", percentile=90, max_duration_ratio=1.5, min_events=10)
    old = stats(100, 0, [10.0] * 100)
    assert rule.verdict(stats(100, 0, [14.0] * 100), old) is None
    why = rule.verdict(stats(100, 0, [10.0] * 80 + [30.0] * 20), old)
    assert why is not None and "p90 duration 30.0 ms" in why and "10.0 ms" in why
    assert rule.verdict(stats(9, 0, [99.0] * 9), old) is None  # too few events
    assert rule.verdict(stats(50, 0, [99.0] * 50), stats(0, 0, [])) is None  # nothing to compare


def test_the_error_rule_tolerates_the_stable_versions_own_errors() -> None:
    rule = RollbackRule(metric="error_rate", max_error_rate_increase=0.05, min_events=20)
    assert rule.verdict(stats(100, 12, []), stats(100, 10, [])) is None
    assert rule.verdict(stats(100, 16, []), stats(100, 10, [])) is not None
