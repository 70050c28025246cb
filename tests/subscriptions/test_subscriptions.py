"""Subscriptions through the API: the callback test, notifications, signatures, bad input."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from pathlib import Path

from nfaas.notifications.delivery import SIGNATURE_HEADER, TIMESTAMP_HEADER
from nfaas.sandboxes.base import Event
from tests.canary.kit import running_kit
from tests.subscriptions.receiver import free_port, receiving

SUBS = "/api/v1/subscriptions"
SECRET = "a-secret-of-16-or-more"


async def test_a_subscriber_hears_lifecycle_events_signed(tmp_path: Path) -> None:
    async with running_kit(tmp_path, allow_private_callback_urls=True) as kit, receiving() as rx:
        acme = kit.tenant("acme")
        r = await kit.http.post(SUBS, json={"callbackUri": rx.url, "secret": SECRET}, headers=acme)
        assert r.status_code == 201, r.text
        sub = r.json()
        assert rx.gets == 1 and sub["state"] == "ACTIVE" and sub["signed"] is True
        assert "secret" not in sub and r.headers["location"] == f"{SUBS}/{sub['id']}"
        await kit.onboard("1.0.0", "v1")
        await kit.onboard("2.0.0", "v2")
        await kit.events(3)
        await kit.http.put("/api/v1/functions/demo/fn/policy",
                           json={"weights": {"1.0.0": 50, "2.0.0": 50}}, headers=acme)  # fmt: skip
        await rx.wait_for(4)
        types = rx.types()
        assert types[:3] == ["PackageOnboarded", "PackageOnboarded", "InstanceCreated"]
        assert "VersionPolicyChanged" in types
        for headers, body in rx.posts:
            stamp = headers[TIMESTAMP_HEADER.lower()]
            mac = hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256)
            assert headers[SIGNATURE_HEADER.lower()] == "sha256=" + mac.hexdigest()
        first = rx.bodies()[0]
        assert first["subscriptionId"] == sub["id"] and first["app"] == "demo"
        async with asyncio.timeout(5):  # the POST is answered before delivery is recorded
            while kit.platform.notifications.subscriptions.pending(sub["id"]):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        shown = (await kit.http.get(f"{SUBS}/{sub['id']}", headers=acme)).json()
        assert shown["delivered"] == len(rx.posts) and shown["failed"] == 0


async def test_filters_and_periodic_metrics(tmp_path: Path) -> None:
    async with running_kit(tmp_path, allow_private_callback_urls=True) as kit, receiving() as rx:
        acme = kit.tenant("acme")
        await kit.onboard("1.0.0", "v1")
        await kit.onboard("1.0.0", "v1", app="other", tenant="acme")
        body = {"callbackUri": rx.url, "filter": {"notificationTypes": ["InstanceCreated",
                "FunctionMetrics"], "functions": ["demo/fn"]}}  # fmt: skip
        assert (await kit.http.post(SUBS, json=body, headers=acme)).status_code == 201
        await kit.events(2)
        await kit.platform.router.dispatch("other", "fn", Event("invoke"))
        assert kit.platform.notifications.report_metrics() == 1
        await rx.wait_for(2)
        assert sorted(rx.types()) == ["FunctionMetrics", "InstanceCreated"]
        report = next(b for b in rx.bodies() if b["notificationType"] == "FunctionMetrics")
        assert list(report["metrics"]) == ["demo/fn@1.0.0"]
        assert report["metrics"]["demo/fn@1.0.0"]["invocations"] == 2


async def test_bad_callbacks_and_other_tenants_are_refused(tmp_path: Path) -> None:
    async with (
        running_kit(tmp_path, allow_private_callback_urls=True) as kit,
        receiving(get_status=200) as rx,
    ):
        acme, globex = kit.tenant("acme"), kit.tenant("globex")
        await kit.onboard("1.0.0", "v1")
        cases = [
            ({"callbackUri": rx.url}, 400, "callback-test-failed",
             f"test GET {rx.url} answered HTTP 200, not 204"),
            ({"callbackUri": f"http://127.0.0.1:{free_port()}/gone"}, 400,
             "callback-test-failed", "ConnectError"),
            ({"callbackUri": "ftp://127.0.0.1/x"}, 400, "callback-not-allowed",
             "is not an http(s) URL"),
            ({"callbackUri": rx.url, "secret": "short"}, 400, "invalid-request", "secret"),
            ({"callbackUri": rx.url, "filter": {"functions": ["demo/fn"]}}, 404, "not-found",
             "filter: no function demo/fn"),
        ]  # fmt: skip
        for body, status, kind, detail in cases:
            r = await kit.http.post(SUBS, json=body, headers=globex)
            assert r.status_code == status, r.text
            assert r.json()["type"] == f"urn:nfaas:problem:{kind}" and detail in r.json()["detail"]
        assert (await kit.http.get(SUBS, headers=kit.operator)).json() == []
        rx.get_status = 204
        sub = (await kit.http.post(SUBS, json={"callbackUri": rx.url}, headers=acme)).json()
        assert (await kit.http.get(f"{SUBS}/{sub['id']}", headers=globex)).status_code == 404
        assert (await kit.http.delete(f"{SUBS}/{sub['id']}", headers=globex)).status_code == 404
        assert (await kit.http.get(SUBS, headers=globex)).json() == []
        assert [s["id"] for s in (await kit.http.get(SUBS, headers=acme)).json()] == [sub["id"]]
        assert (await kit.http.delete(f"{SUBS}/{sub['id']}", headers=acme)).status_code == 204
        assert (await kit.http.get(SUBS, headers=acme)).json() == []


async def test_private_callbacks_are_refused_unless_the_operator_allows_them(
    tmp_path: Path,
) -> None:
    async with running_kit(tmp_path) as kit, receiving() as rx:
        r = await kit.http.post(SUBS, json={"callbackUri": rx.url}, headers=kit.operator)
        assert r.status_code == 400 and rx.gets == 0
        problem = r.json()
        assert problem["type"] == "urn:nfaas:problem:callback-not-allowed"
        assert "127.0.0.1, a non-public address" in problem["detail"]
        assert "allow_private_callback_urls" in problem["detail"]
        assert (await kit.http.get(SUBS, headers=kit.operator)).json() == []
