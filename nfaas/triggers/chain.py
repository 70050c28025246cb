"""Function chaining: a function's result becomes the event of the next functions.

A function descriptor's ``chain`` names functions of the same application;
when the function succeeds (with a non-empty result, unless ``when: always``),
each of them gets an event ``trigger="chain"`` whose body is that result
(IoT paper, section 3.4: an anomaly in a sensor stream starts video
surveillance). Hops run in the background: the caller of the first function
gets its answer without waiting for the chain.

``meta["chain"]`` carries the chain along: ``id``, ``head`` (the function the
first event reached), ``hop`` (1 for the first function after the head),
``from`` and ``started`` (the head event's arrival, ``time.monotonic()``, a
clock every process of the host shares, so a function can measure the chain's
latency so far itself).

Metrics (in the platform's registry, so on ``/metrics``):
``nfaas_chain_hop_seconds{app, source, target}`` from the end of one hop to
the end of the next (queueing, cold start and run), ``nfaas_chain_seconds{app,
head}`` from the head event's arrival to the end of the chain's last hop, and
``nfaas_chain_dropped_total{app, reason}`` for hops not run: ``max_hops`` (a
chain longer than ``MAX_HOPS``, e.g. a loop), ``failed`` (the next function
failed or was refused), ``shutdown``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

from prometheus_client import Counter, Histogram

from nfaas.errors import NfaasError
from nfaas.packages.descriptors import FunctionDescriptor
from nfaas.sandboxes.base import Event, Result
from nfaas.telemetry.metrics import Telemetry
from nfaas.triggers.base import Dispatch, drain

log = logging.getLogger(__name__)

MAX_HOPS = 8
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ChainRunner:
    """Follows the ``chain`` of each function that succeeds; owns the hops under way."""

    def __init__(self, dispatch: Dispatch, telemetry: Telemetry) -> None:
        self._dispatch = dispatch
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self._closed = False
        self._hop = Histogram("nfaas_chain_hop_seconds", "Chain: from one hop's end to the next's",
                              ["app", "source", "target"], buckets=_BUCKETS, registry=telemetry.registry)  # fmt: skip
        self._chain = Histogram("nfaas_chain_seconds", "Chain: from the head event to the last hop's end",
                                ["app", "head"], buckets=_BUCKETS, registry=telemetry.registry)  # fmt: skip
        self._dropped = Counter("nfaas_chain_dropped", "Chain hops not run", ["app", "reason"],
                                registry=telemetry.registry)  # fmt: skip
        #: (app, head) -> [chains ended, sum of their seconds]; (app, source, target) -> hops
        self.ended: dict[tuple[str, str], list[float]] = {}
        self.hops: dict[tuple[str, str, str], int] = {}

    def follow(
        self, descriptor: FunctionDescriptor, app: str, event: Event, result: Result, arrival: float
    ) -> None:
        """``descriptor``'s function answered ``result`` to ``event``: start its next hops."""
        chain = event.meta.get("chain") if event.trigger == "chain" else None
        if chain is None:
            chain = {
                "id": f"c{next(self._ids)}",
                "head": descriptor.name,
                "hop": 0,
                "started": arrival,
            }
        links = [
            link for link in descriptor.chain
            if (result.body or link.when == "always") and (link.after is None or event.trigger in link.after)
        ]  # fmt: skip
        if not links:
            self._ended(app, chain)
            return
        if chain["hop"] >= MAX_HOPS:
            self._dropped.labels(app, "max_hops").inc()
            log.warning(
                "chain %s of %s/%s: over %d hops, stopped",
                chain["id"],
                app,
                chain["head"],
                MAX_HOPS,
            )
            return
        for link in links:
            meta = {"chain": {**chain, "hop": chain["hop"] + 1, "from": descriptor.name}}
            self._start(app, descriptor.name, link.function, Event("chain", result.body, meta))

    def _start(self, app: str, source: str, target: str, event: Event) -> None:
        if self._closed:
            self._dropped.labels(app, "shutdown").inc()
            return
        task = asyncio.get_running_loop().create_task(self._run(app, source, target, event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, app: str, source: str, target: str, event: Event) -> None:
        sent = time.monotonic()
        try:
            # the router follows the target's own chain once it succeeds
            await self._dispatch(app, target, event, arrival=sent)
        except NfaasError as exc:
            self._dropped.labels(app, "failed").inc()
            log.info("chain hop %s -> %s of %s: %s", source, target, app, exc.detail)
            return
        except Exception:
            self._dropped.labels(app, "failed").inc()
            log.exception("chain hop %s -> %s of %s failed", source, target, app)
            return
        self._hop.labels(app, source, target).observe(time.monotonic() - sent)
        key = (app, source, target)
        self.hops[key] = self.hops.get(key, 0) + 1

    def _ended(self, app: str, chain: dict[str, Any]) -> None:
        if chain["hop"] == 0:
            return  # a function with a chain answered nothing to pass on: no chain happened
        seconds = time.monotonic() - float(chain["started"])
        self._chain.labels(app, chain["head"]).observe(seconds)
        totals = self.ended.setdefault((app, chain["head"]), [0, 0.0])
        totals[0] += 1
        totals[1] += seconds

    def _cancelled(self, task: asyncio.Task[Any]) -> None:
        self._dropped.labels("", "shutdown").inc()

    async def aclose(self, grace_s: float = 0.0) -> None:
        """Start no hop from now on; let those under way finish for ``grace_s``, cancel the rest."""
        self._closed = True
        await drain(self._tasks, grace_s, self._cancelled)
