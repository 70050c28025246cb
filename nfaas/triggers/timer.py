"""Timer triggers: a function invoked every ``interval_s`` seconds.

A tick that arrives while the previous one still runs is skipped and counted,
so a slow function never piles up invocations behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from nfaas.errors import NfaasError
from nfaas.packages.descriptors import TimerTrigger
from nfaas.sandboxes.base import Event
from nfaas.telemetry.metrics import Telemetry
from nfaas.triggers.base import Dispatch, SourceState, TriggerBinding, TriggerSource

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

    async def _loop(self) -> None:
        next_at = time.monotonic() + self._interval
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            scheduled = next_at
            next_at += self._interval
            self.ticks += 1
            if self._running is not None and not self._running.done():
                self.failed += 1
                self._telemetry.dropped("timer", "previous_tick_running")
                continue
            self._running = asyncio.create_task(self._tick(self.ticks, scheduled))

    async def _tick(self, tick: int, scheduled: float) -> None:
        b = self.binding
        event = Event("timer", b"", {"tick": tick, "interval_s": self._interval})
        try:
            await self._dispatch(b.app, b.function, event, arrival=scheduled)
            self.delivered += 1
        except NfaasError as exc:
            self.failed += 1
            log.warning("timer tick %d of %s/%s failed: %s", tick, b.app, b.function, exc.detail)

    async def aclose(self) -> None:
        if self.state is SourceState.CLOSED:
            return
        self.state = SourceState.CLOSED
        for task in (self._task, self._running):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
