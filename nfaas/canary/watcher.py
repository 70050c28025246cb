"""Automatic rollback: each policy's rule, checked on the canaries at an interval.

A fired rule rolls the function back through ``VersionMapping.rollback`` (by
``auto``), which records the rollback on the policy, tells the subscribers and
reconciles. ``check()`` is one pass, for tests on a controlled clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from nfaas.canary.mapping import VersionMapping
from nfaas.canary.policies import FunctionKey
from nfaas.canary.window import OutcomeWindows
from nfaas.errors import NfaasError

log = logging.getLogger(__name__)


class RollbackWatcher:
    def __init__(
        self,
        mapping: VersionMapping,
        windows: OutcomeWindows,
        serving: Callable[[], dict[FunctionKey, list[str]]],
        *,
        interval_s: float = 1.0,
    ) -> None:
        self._mapping = mapping
        self._windows = windows
        self._serving = serving
        self._interval = interval_s
        self._task: asyncio.Task[None] | None = None

    def refresh(self) -> None:
        """Watch the stable and canary versions of every policy with a rule (after a change)."""
        keys = {
            (r.app, r.name, v)
            for r in self._mapping.watched(self._serving())
            for v in (r.stable, *r.canaries)
        }
        self._windows.watch(keys)

    async def check(self) -> list[tuple[FunctionKey, str]]:
        """One pass over the rules; the functions rolled back, and why."""
        fired: list[tuple[FunctionKey, str]] = []
        for record in self._mapping.watched(self._serving()):
            assert record.rule is not None
            old = self._windows.stats(
                (record.app, record.name, record.stable), record.rule.window_s
            )
            for canary in record.canaries:
                new = self._windows.stats((record.app, record.name, canary), record.rule.window_s)
                why = record.rule.verdict(new, old)
                if why is None:
                    continue
                reason = f"{canary}: {why}"
                log.warning("rolling %s/%s back to %s: %s", record.app, record.name,
                            record.stable, reason)  # fmt: skip
                try:
                    await self._mapping.rollback(record.app, record.name, None, reason, by="auto")
                except NfaasError as exc:  # e.g. the function was disabled meanwhile
                    log.warning("rollback of %s/%s failed: %s", record.app, record.name, exc)
                    break
                fired.append((record.key, reason))
                break
        if fired:
            self.refresh()
        return fired

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="rollback-watcher")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.check()
            except Exception:  # the next pass tries again
                log.exception("checking rollback rules failed")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
