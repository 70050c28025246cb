"""Delivery: retried with backoff on a clock the test moves, suspended, kept across restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from nfaas.catalog.store import StateStore
from nfaas.notifications.delivery import Deliverer, RetryPolicy
from nfaas.notifications.subscriptions import (
    SubscriptionFilter,
    SubscriptionRecord,
    SubscriptionStore,
)
from tests.canary.kit import running_kit
from tests.subscriptions.receiver import free_port, receiving

SUBS = "/api/v1/subscriptions"


class ManualClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_a_failing_callback_is_retried_with_backoff_then_suspended(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    subs = SubscriptionStore(store)
    clock = ManualClock()
    async with receiving(post_status=503) as rx, httpx.AsyncClient() as client:
        subs.add(SubscriptionRecord("s1", "acme", rx.url, SubscriptionFilter(), None, "ACTIVE", 0))
        subs.enqueue([("s1", b'{"n": 1}'), ("s1", b'{"n": 2}')], clock())
        retry = RetryPolicy(max_attempts=4, backoff_s=2.0)
        deliverer = Deliverer(subs, client, retry=retry, clock=clock)
        waits = []
        for _ in range(3):
            assert await deliverer.deliver_due() == 0
            assert subs.due(clock()) == []  # not before its backoff
            waits.append(subs.next_due() - clock.now)  # type: ignore[operator]
            clock.now = subs.next_due()  # type: ignore[assignment]
        assert waits == [2.0, 4.0, 8.0]
        rx.post_status = 204  # back before the fourth and last attempt: both go, in order
        assert await deliverer.deliver_due() == 2
        assert [b["n"] for b in rx.bodies()] == [1, 2]
        assert subs.pending("s1") == 0 and subs.get("s1").delivered == 2  # type: ignore[union-attr]
        # now one that never gets through
        rx.post_status = 500
        subs.enqueue([("s1", b'{"n": 3}'), ("s1", b'{"n": 4}')], clock())
        for _ in range(4):
            clock.now += 60
            await deliverer.deliver_due()
        record = subs.get("s1")
        assert record is not None
        assert (record.state, record.failed, record.last_error) == ("SUSPENDED", 2, "HTTP 500")
        assert subs.pending("s1") == 0 and deliverer.outcomes["dropped"] == 2
        clock.now += 3600
        assert await deliverer.deliver_due() == 0  # not retried for ever
    store.close()


async def test_notifications_are_not_lost_across_a_restart(tmp_path: Path) -> None:
    port = free_port()
    async with running_kit(tmp_path, allow_private_callback_urls=True) as kit:
        async with receiving(port) as rx:
            r = await kit.http.post(SUBS, json={"callbackUri": rx.url}, headers=kit.operator)
            sub = r.json()
        # the receiver is down: these wait in the outbox
        await kit.onboard("1.0.0", "v1")
        await kit.events(1)
        await asyncio.sleep(0.1)
        shown = (await kit.http.get(f"{SUBS}/{sub['id']}", headers=kit.operator)).json()
        assert shown["pending"] == 2 and shown["delivered"] == 0
        assert "ConnectError" in shown["lastError"]
    async with receiving(port) as rx, running_kit(tmp_path, allow_private_callback_urls=True):
        await rx.wait_for(2, timeout_s=10)  # the first retry is due a second after the failure
        assert rx.types()[:2] == ["PackageOnboarded", "InstanceCreated"]


async def test_a_suspended_subscription_resumes_once_its_callback_passes(tmp_path: Path) -> None:
    async with running_kit(tmp_path, allow_private_callback_urls=True) as kit, receiving() as rx:
        sub = (await kit.http.post(SUBS, json={"callbackUri": rx.url}, headers=kit.operator)).json()
        kit.platform.notifications.subscriptions.set_state(sub["id"], "SUSPENDED")
        rx.get_status = 500
        r = await kit.http.post(f"{SUBS}/{sub['id']}/resume", headers=kit.operator)
        assert r.status_code == 400 and r.json()["type"].endswith("callback-test-failed")
        rx.get_status = 204
        r = await kit.http.post(f"{SUBS}/{sub['id']}/resume", headers=kit.operator)
        assert r.json()["state"] == "ACTIVE"
