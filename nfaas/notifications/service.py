"""Subscriptions as a service: create (with the callback tested), publish, report metrics.

EVE025 7.2.5 and gap #5.2: Serverless Function Management collects the metrics
and sends notifications to a subscribing callback URL. Lifecycle events come
from the ``EventLog``; periodic metrics from ``Telemetry``. A tenant's
subscription hears its own functions and packages; the operator's hear all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from nfaas.catalog.store import StateStore
from nfaas.errors import CallbackNotAllowed, CallbackTestFailed, NfaasError, NotFound
from nfaas.notifications.delivery import Deliverer, RetryPolicy
from nfaas.notifications.events import EventLog, LifecycleEvent
from nfaas.notifications.subscriptions import (
    SubscriptionFilter,
    SubscriptionRecord,
    SubscriptionStore,
)
from nfaas.packages.fetch import public_destinations_only

log = logging.getLogger(__name__)

#: the JSON metrics of every version, keyed "app/function@version" (``Telemetry.as_json``)
MetricsSource = Callable[[], dict[str, dict[str, Any]]]


class Notifications:
    def __init__(
        self,
        store: StateStore,
        events: EventLog,
        metrics: MetricsSource,
        *,
        allow_private_callbacks: bool = False,
        metrics_interval_s: float = 60.0,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        test_timeout_s: float = 5.0,
    ) -> None:
        self._store = store
        self.subscriptions = SubscriptionStore(store)
        self._metrics = metrics
        self._interval = metrics_interval_s
        self._clock = clock
        self._check = None if allow_private_callbacks else public_destinations_only
        self._client = httpx.AsyncClient(timeout=test_timeout_s, follow_redirects=False)
        self.deliverer = Deliverer(
            self.subscriptions, self._client, retry=retry, clock=clock, check=self._check
        )
        self._task: asyncio.Task[None] | None = None
        events.listen(self.publish)

    # -- the resource ------------------------------------------------------------------------

    async def subscribe(
        self, tenant: str, callback: str, filter: SubscriptionFilter, secret: str | None
    ) -> SubscriptionRecord:
        """Check the filter and the callback, test it (GET, 204 expected), then store."""
        self._check_filter(tenant, filter)
        await self._test(callback)
        record = SubscriptionRecord(
            id=str(uuid.uuid4()), tenant=tenant, callback=callback, filter=filter,
            secret=secret or None, state="ACTIVE", created_at=self._clock(),
        )  # fmt: skip
        self.subscriptions.add(record)
        return record

    def get(self, subscription_id: str, scope: str | None) -> SubscriptionRecord:
        record = self.subscriptions.get(subscription_id)
        if record is None or (scope is not None and record.tenant != scope):
            raise NotFound(f"no subscription {subscription_id}")
        return record

    def delete(self, subscription_id: str, scope: str | None) -> None:
        self.subscriptions.delete(self.get(subscription_id, scope).id)

    async def resume(self, subscription_id: str, scope: str | None) -> SubscriptionRecord:
        """A SUSPENDED subscription becomes ACTIVE again once its callback passes the test."""
        record = self.get(subscription_id, scope)
        await self._test(record.callback)
        self.subscriptions.set_state(record.id, "ACTIVE")
        return self.get(subscription_id, scope)

    def _check_filter(self, tenant: str, filter: SubscriptionFilter) -> None:
        for name in filter.functions or []:
            app, _, function = name.partition("/")
            owners = {
                f.tenant for f in self._store.list_functions(app) if function in ("*", f.name)
            }
            if not function or not owners or (tenant != "operator" and tenant not in owners):
                raise NotFound(f"filter: no function {name}")

    async def _test(self, callback: str) -> None:
        parts = urlsplit(callback)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CallbackNotAllowed(f"callback URI {callback!r} is not an http(s) URL")
        if self._check is not None:
            try:
                await self._check(callback)
            except NfaasError as exc:
                raise CallbackNotAllowed(
                    exc.detail.replace("code URL", "callback URI")
                    .replace("downloads code from", "sends notifications to")
                    .replace("allow_private_code_urls", "allow_private_callback_urls")
                ) from exc
        try:
            response = await self._client.get(callback)
        except httpx.HTTPError as exc:
            raise CallbackTestFailed(f"test GET {callback} failed: {exc!r}") from exc
        if response.status_code != 204:
            raise CallbackTestFailed(
                f"test GET {callback} answered HTTP {response.status_code}, not 204",
                callback_status=response.status_code,
            )

    # -- publishing ----------------------------------------------------------------------------

    def publish(self, event: LifecycleEvent) -> None:
        """An ``EventLog`` listener: queue the event for every subscription that wants it."""
        items = [
            (sub.id, _body(sub.id, event.as_dict()))
            for sub in self.subscriptions.all()
            if sub.state == "ACTIVE" and _sees(sub, event.tenant) and sub.filter.matches(event)
        ]
        if items:
            self.subscriptions.enqueue(items, self._clock())
            self.deliverer.wake()

    def report_metrics(self) -> int:
        """Queue each subscription's periodic metrics report; how many were queued."""
        now = self._clock()
        versions = self._metrics()
        items: list[tuple[str, bytes]] = []
        for sub in self.subscriptions.all():
            if sub.state != "ACTIVE":
                continue
            wanted = {key: stats for key, stats in versions.items() if self._wants(sub, key, now)}
            if wanted:
                report = {"notificationType": "FunctionMetrics", "timeStamp": now,
                          "metrics": wanted}  # fmt: skip
                items.append((sub.id, _body(sub.id, report)))
        if items:
            self.subscriptions.enqueue(items, now)
            self.deliverer.wake()
        return len(items)

    def _wants(self, sub: SubscriptionRecord, key: str, now: float) -> bool:
        fn, _, version = key.partition("@")
        app, _, name = fn.partition("/")
        record = self._store.get_function(app, name, version)
        if record is None or not _sees(sub, record.tenant):
            return False
        probe = LifecycleEvent("FunctionMetrics", now, record.tenant, app, name, version)
        return sub.filter.matches(probe)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self.deliverer.start()
        if self._task is None and self._interval > 0:
            self._task = asyncio.create_task(self._report_loop(), name="metrics-notifications")

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                self.report_metrics()
            except Exception:
                log.exception("queueing metrics notifications failed")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.deliverer.aclose()
        await self._client.aclose()


def _sees(sub: SubscriptionRecord, tenant: str) -> bool:
    return sub.tenant in ("operator", tenant)


def _body(subscription_id: str, content: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "id": str(uuid.uuid4()),
            "subscriptionId": subscription_id,
            **content,
            "_links": {"subscription": {"href": f"/api/v1/subscriptions/{subscription_id}"}},
        }
    )
