"""Delivering notifications: a signed POST, retried with backoff, never for ever.

Each outbox entry is POSTed to its subscription's callback; a 2xx answer
delivers it. A failure (another status, a refused connection, a timeout) is
retried after a delay that doubles each time; after ``max_attempts`` the
subscription is SUSPENDED with the last error (the API shows both) and what it
had queued is dropped and counted. Entries of one subscription go in order;
subscriptions are served concurrently, so a slow callback delays only its own.

With a secret, the body is signed: ``X-Nfaas-Signature: sha256=<hex>`` is the
HMAC-SHA256 of ``<X-Nfaas-Timestamp>.<body>`` (the timestamp lets a receiver
refuse replays).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
from prometheus_client.core import CounterMetricFamily, Metric

from nfaas.errors import NfaasError
from nfaas.notifications.subscriptions import OutboxEntry, SubscriptionStore
from nfaas.packages.fetch import DestinationCheck

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Nfaas-Signature"
TIMESTAMP_HEADER = "X-Nfaas-Timestamp"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 8
    backoff_s: float = 1.0
    max_backoff_s: float = 300.0

    def delay(self, attempts: int) -> float:
        """The wait after the ``attempts``-th failure (1, 2, ...)."""
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** (attempts - 1)))


class Deliverer:
    def __init__(
        self,
        subscriptions: SubscriptionStore,
        client: httpx.AsyncClient,
        *,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        check: DestinationCheck | None = None,
        idle_s: float = 5.0,
    ) -> None:
        self._subs = subscriptions
        self._client = client
        self._retry = retry or RetryPolicy()
        self._clock = clock
        self._check = check
        self._idle_s = idle_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: deliveries by outcome (delivered, retried, dropped), for /metrics
        self.outcomes = {"delivered": 0, "retried": 0, "dropped": 0}

    def wake(self) -> None:
        self._wake.set()

    async def deliver_due(self) -> int:
        """One round: every entry due now, in order per subscription; how many were delivered."""
        by_subscription: dict[str, list[OutboxEntry]] = {}
        for entry in self._subs.due(self._clock()):
            by_subscription.setdefault(entry.subscription_id, []).append(entry)
        counts = await asyncio.gather(*(self._serve(e) for e in by_subscription.values()))
        return sum(counts)

    async def _serve(self, entries: list[OutboxEntry]) -> int:
        delivered = 0
        for entry in entries:
            error = await self._post(entry)
            if error is None:
                self._subs.delivered(entry)
                self.outcomes["delivered"] += 1
                delivered += 1
                continue
            if entry.attempts + 1 >= self._retry.max_attempts:
                dropped = self._subs.give_up(entry, error)
                self.outcomes["dropped"] += dropped
                log.warning("subscription %s suspended after %d attempts: %s",
                            entry.subscription_id, entry.attempts + 1, error)  # fmt: skip
            else:
                self._subs.retry(
                    entry, self._clock() + self._retry.delay(entry.attempts + 1), error
                )
                self.outcomes["retried"] += 1
            break  # the rest of this subscription's entries wait: they stay in order
        return delivered

    async def _post(self, entry: OutboxEntry) -> str | None:
        """None when delivered, else what went wrong."""
        sub = self._subs.get(entry.subscription_id)
        if sub is None:
            return "subscription deleted"
        stamp = str(int(self._clock()))
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: stamp}
        if sub.secret:
            headers[SIGNATURE_HEADER] = signature(sub.secret, stamp, entry.body)
        try:
            if self._check is not None:
                await self._check(sub.callback)
            response = await self._client.post(sub.callback, content=entry.body, headers=headers)
        except NfaasError as exc:
            return exc.detail
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if not 200 <= response.status_code < 300:
            return f"HTTP {response.status_code}"
        return None

    # -- the background task ---------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="notification-delivery")

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.deliver_due()
            except Exception:  # the next round tries again
                log.exception("delivering notifications failed")
            next_at = self._subs.next_due()
            delay = self._idle_s if next_at is None else next_at - self._clock()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, min(self._idle_s, delay)))

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class DeliveryCollector:
    """``nfaas_notifications_total`` by outcome, read at scrape time."""

    def __init__(self, deliverer: Deliverer) -> None:
        self._deliverer = deliverer

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "nfaas_notifications",
            "Notifications to subscriptions by outcome (delivered, retried, dropped)",
            labels=["outcome"],
        )
        for outcome, count in self._deliverer.outcomes.items():
            family.add_metric([outcome], count)
        yield family
