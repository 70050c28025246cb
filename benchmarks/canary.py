"""What canary routing and notifications cost: ``python -m benchmarks.canary``.

Distributor: ns per ``pick`` for a single-version function (the floor: what
every event paid before version-mapping policies), an 80/20 canary and a sticky
80/20 canary keyed by an HTTP header, each the median of several rounds.
Notifications: ms from an event emitted to its POST received by a callback on
127.0.0.1, against the floor of a bare POST to the same callback with the same
client (the outbox's SQLite writes and the delivery loop are the difference).
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from nfaas.catalog.store import StateStore
from nfaas.notifications.events import EventLog
from nfaas.notifications.service import Notifications
from nfaas.notifications.subscriptions import SubscriptionFilter
from nfaas.sandboxes.base import Event
from nfaas.triggers.distributor import Distributor, StickyKey, VersionPolicy
from tests.subscriptions.receiver import receiving

PICKS = 200_000
ROUNDS = 5


def pick_ns(policy: VersionPolicy, events: list[Event]) -> float:
    d = Distributor(random.Random(1))
    d.set_policies({("demo", "fn"): policy})
    pick, n = d.pick, len(events)
    rounds = []
    for _ in range(ROUNDS):
        started = time.perf_counter_ns()
        for i in range(PICKS):
            pick("demo", "fn", events[i % n])
        rounds.append((time.perf_counter_ns() - started) / PICKS)
    return statistics.median(rounds)


def distributor_figures() -> dict[str, float]:
    events = [Event("http", b"", {"headers": {"x-device": f"d{i}"}}) for i in range(1024)]
    canary = {"1": 80, "2": 20}
    return {
        "single_version_ns (floor)": pick_ns(VersionPolicy.single("1"), events),
        "canary_80_20_ns": pick_ns(VersionPolicy.of(canary, ["1", "2"]), events),
        "sticky_canary_80_20_ns": pick_ns(
            VersionPolicy.of(canary, ["1", "2"], StickyKey("header", "x-device")), events
        ),
    }


async def notification_figures(count: int = 200) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = StateStore(Path(tmp) / "state.db")
        events = EventLog()
        service = Notifications(store, events, dict, allow_private_callbacks=True)
        async with receiving() as rx, httpx.AsyncClient() as bare:
            floor = []
            for i in range(count):
                started = time.perf_counter()
                await bare.post(rx.url, content=json.dumps({"n": i}))
                floor.append(time.perf_counter() - started)
            rx.posts.clear()
            await service.subscribe("operator", rx.url, SubscriptionFilter(), "s" * 16)
            service.start()
            latency = []
            for _ in range(count):
                started = time.perf_counter()
                events.emit("VersionPolicyChanged", "operator", app="demo", function="fn")
                await rx.wait_for(len(latency) + 1)
                latency.append(time.perf_counter() - started)
            await service.aclose()
        store.close()
    return {
        "bare_post_ms_p50 (floor)": statistics.median(floor) * 1000,
        "event_to_callback_ms_p50": statistics.median(latency) * 1000,
        "event_to_callback_ms_p99": sorted(latency)[int(0.99 * (count - 1))] * 1000,
    }


def main() -> int:
    figures = distributor_figures() | asyncio.run(notification_figures())
    for name, value in figures.items():
        print(f"{name:32s} {value:10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
