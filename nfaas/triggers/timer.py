"""Timer triggers: a function invoked every ``interval_s`` seconds.

Ticks are planned on a fixed grid (start + k * interval), never from when the
previous tick ran, so a timer does not drift; each event's arrival is its
planned time, so a late start shows as latency. Nothing is dropped silently;
``nfaas_trigger_dropped_total{trigger="timer", reason=...}`` counts

``previous_tick_running``
    a tick that came while the previous one still ran: it is skipped, so a slow
    function never piles up invocations behind it;
``late``
    a tick whose whole interval passed before the timer could run (the event
    loop was blocked or the process stopped): missed ticks are not replayed in
    a burst, the timer goes on from the latest planned time;
``internal_error``
    dispatching raised something other than an ``NfaasError`` (a bug; logged
    with its traceback);
``shutdown``
    a tick still running when the grace period of ``aclose`` ran out.

A tick whose function fails is an invocation outcome (``nfaas_invocations_total``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from nfaas.errors import NfaasError
from nfaas.packages.descriptors import TimerTrigger
from nfaas.sandboxes.base import Event
from nfaas.telemetry.metrics import Telemetry
from nfaas.triggers.base import Dispatch, SourceState, TriggerBinding, TriggerSource, drain

log = logging.getLogger(__name__)


class TimerSource(TriggerSource):
    def __init__(self, binding: TriggerBinding, dispatch: Dispatch, telemetry: Telemetry) -> None:
        super().__init__(binding)
        assert isinstance(binding.spec, TimerTrigger)
        self._interval = binding.spec.interval_s
        self._dispatch = dispatch
        self._telemetry = telemetry
        self._task: asyncio.Task[None] | None = None
        self._running: asyncio.Task[None] | None = None
        self.ticks = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(
            self._loop(), name=f"timer:{self.binding.app}/{self.binding.function}"
        )
        self.state = SourceState.LISTENING

    def _drop(self, reason: str, count: int = 1) -> None:
        self.failed += count
        for _ in range(count):
            self._telemetry.dropped("timer", reason)

    async def _loop(self) -> None:
        next_at = time.monotonic() + self._interval
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            missed = int((time.monotonic() - next_at) // self._interval)
            if missed > 0:
                self.ticks += missed
                self._drop("late", missed)
                next_at += missed * self._interval
            scheduled = next_at
            next_at += self._interval
            self.ticks += 1
            if self._running is not None and not self._running.done():
                self._drop("previous_tick_running")
                continue
            self._running = asyncio.create_task(self._tick(self.ticks, scheduled))

    async def _tick(self, tick: int, scheduled: float) -> None:
        b = self.binding
        event = Event("timer", b"", {"tick": tick, "interval_s": self._interval})
        try:
            await self._dispatch(b.app, b.function, event, arrival=scheduled)
            self.delivered += 1
        except NfaasError as exc:
            # Counted where it happened: by the router or as an invocation outcome.
            self.failed += 1
            log.warning("timer tick %d of %s failed: %s", tick, b.owner, exc.detail)
        except Exception:
            self._drop("internal_error")
            log.exception("timer tick %d of %s: dispatching failed", tick, b.owner)

    def _cancelled(self, task: asyncio.Task[Any]) -> None:
        self._drop("shutdown")

    async def _close(self, grace_s: float) -> None:
        if self._task is not None:
            self._task.cancel()  # no tick from here on
            await asyncio.gather(self._task, return_exceptions=True)
        if self._running is not None:
            await drain([self._running], grace_s, self._cancelled)
