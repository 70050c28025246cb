"""What the dashboard shows, as one JSON document, seen with one principal's scope.

Applications, functions and their versions with weights, instances by backend
and state, cold starts, latency histograms over time, recent lifecycle events;
for the operator also pool use and node capacity.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from nfaas.dashboard.history import LatencyHistory

if TYPE_CHECKING:
    from nfaas.platform import Platform


def dashboard_snapshot(
    platform: Platform, scope: str | None, history: LatencyHistory
) -> dict[str, Any]:
    history.sample()
    instances = [asdict(i) for i in platform.manager.instances() if scope in (None, i.tenant)]
    by_backend: dict[str, dict[str, int]] = {}
    for inst in instances:
        states = by_backend.setdefault(inst["backend"], {})
        states[inst["state"]] = states.get(inst["state"], 0) + 1
    apps = _applications(platform, scope, instances)
    names = {f"{a['app']}/{f['name']}@{v['version']}" for a in apps for f in a["functions"]
             for v in f["versions"]}  # fmt: skip
    out: dict[str, Any] = {
        "now": time.time(),
        "tenant": scope or "operator",
        "applications": apps,
        "instances": instances,
        "instancesByBackend": by_backend,
        "latency": {"boundsMs": history.bounds_ms, "series": history.series(names)},
        "events": [e.as_dict() for e in platform.events.recent(scope, 30)],
    }
    if scope is None:
        out["node"] = platform.capacity.snapshot()
        out["pools"] = [asdict(p.snapshot()) for p in platform.pools.values()]
    return out


def _applications(
    platform: Platform, scope: str | None, instances: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    serving = platform.store.serving_versions()
    states: dict[tuple[str, str, str], dict[str, int]] = {}
    for inst in instances:
        counts = states.setdefault((inst["app"], inst["function"], inst["version"]), {})
        counts[inst["state"]] = counts.get(inst["state"], 0) + 1
    grouped: dict[str, dict[str, list[str]]] = {}
    for record in platform.store.list_functions():
        if scope in (None, record.tenant):
            grouped.setdefault(record.app, {}).setdefault(record.name, []).append(record.version)
    apps = []
    for app, functions in sorted(grouped.items()):
        rows = []
        for name, versions in sorted(functions.items()):
            policy = platform.distributor.policy(app, name)
            weights = dict(policy.weights) if policy else {}
            active = platform.versions.in_force((app, name), serving.get((app, name), []))
            stable = active.stable if active else next(iter(weights), None)
            rows.append({"name": name, "stable": stable, "sticky": bool(policy and policy.sticky),
                         "versions": [_version(platform, (app, name, v), weights, states)
                                      for v in versions]})  # fmt: skip
        apps.append({"app": app, "functions": rows})
    return apps


def _version(
    platform: Platform,
    key: tuple[str, str, str],
    weights: dict[str, int],
    states: dict[tuple[str, str, str], dict[str, int]],
) -> dict[str, Any]:
    stats = platform.telemetry.stats(key).as_dict() if platform.telemetry.has_stats(key) else None
    return {
        "version": key[2],
        "weight": weights.get(key[2], 0),
        "instances": states.get(key, {}),
        "stats": stats,
    }
