"""Timer sources: ticks on a fixed grid, skipped and late ticks counted, a bounded shutdown."""

from __future__ import annotations

import asyncio
import time

import pytest

from nfaas.sandboxes.base import Event
from nfaas.telemetry.metrics import Telemetry
from nfaas.triggers.timer import TimerSource
from tests.triggers.conftest import StubDispatch, dropped, timer, until

pytestmark = pytest.mark.timeout(20)

INTERVAL = 0.05


async def test_ticks_follow_the_plan_not_the_time_work_takes(telemetry: Telemetry) -> None:
    ran_at: list[float] = []

    def busy(event: Event) -> bytes:
        ran_at.append(time.monotonic())
        time.sleep(INTERVAL * 0.6)  # work that blocks: a timer timed from the tick would drift
        return b""

    dispatch = StubDispatch(busy)
    source = TimerSource(timer("app-a", INTERVAL), dispatch, telemetry)
    await source.start()
    await until(lambda: len(dispatch.calls) >= 6)
    await source.aclose()
    planned = [c.arrival for c in dispatch.calls[:6]]
    assert all(p is not None for p in planned)
    first = planned[0]
    assert first is not None
    for k, p in enumerate(planned):
        assert p == pytest.approx(first + k * INTERVAL, abs=1e-9)
    # Drifting by the work (0.6 interval per tick) would put the 6th tick 3 intervals late.
    assert ran_at[5] - first < 5 * INTERVAL + 2 * INTERVAL
    assert [c.event.meta["tick"] for c in dispatch.calls[:6]] == [1, 2, 3, 4, 5, 6]


async def test_a_tick_during_the_previous_one_is_skipped_and_counted(
    telemetry: Telemetry,
) -> None:
    async def slow(event: Event) -> bytes:
        await asyncio.sleep(INTERVAL * 2.5)
        return b""

    dispatch = StubDispatch(slow)
    source = TimerSource(timer("app-a", INTERVAL), dispatch, telemetry)
    await source.start()
    await until(lambda: source.delivered >= 2)
    await source.aclose(grace_s=1.0)
    skipped = dropped(telemetry, "timer", "previous_tick_running")
    assert skipped >= 2
    assert source.failed == skipped
    assert source.ticks == len(dispatch.calls) + skipped


async def test_ticks_missed_while_the_loop_was_blocked_are_counted_not_replayed(
    telemetry: Telemetry,
) -> None:
    dispatch = StubDispatch()
    source = TimerSource(timer("app-a", INTERVAL), dispatch, telemetry)
    await source.start()
    await until(lambda: len(dispatch.calls) >= 1)
    before = len(dispatch.calls)
    # On purpose: the event loop is blocked for six and a half intervals.
    time.sleep(INTERVAL * 6.5)  # noqa: ASYNC251
    unblocked = time.monotonic()
    await asyncio.sleep(INTERVAL * 0.5)
    await source.aclose()
    after = dispatch.calls[before:]
    # Ticks go on from the latest planned time; the six missed are not replayed in a burst.
    assert 1 <= len(after) <= 2
    assert all(c.arrival is not None and c.arrival > unblocked - INTERVAL for c in after)
    assert dropped(telemetry, "timer", "late") >= 5
    assert source.ticks == len(dispatch.calls) + dropped(telemetry, "timer", "late")


async def test_aclose_stops_ticking_and_waits_for_the_running_tick(telemetry: Telemetry) -> None:
    release = asyncio.Event()

    async def slow(event: Event) -> bytes:
        await release.wait()
        return b""

    dispatch = StubDispatch(slow)
    source = TimerSource(timer("app-a", INTERVAL), dispatch, telemetry)
    await source.start()
    await until(lambda: len(dispatch.calls) == 1)
    closing = asyncio.create_task(source.aclose(grace_s=5.0))
    await asyncio.sleep(INTERVAL * 3)
    assert len(dispatch.calls) == 1 and not closing.done()  # no tick, the running one waited for
    release.set()
    await closing
    assert source.delivered == 1
    assert dropped(telemetry, "timer", "shutdown") == 0


async def test_a_tick_past_the_grace_is_cancelled_and_counted(telemetry: Telemetry) -> None:
    async def hangs(event: Event) -> bytes:
        await asyncio.sleep(3600)
        return b""

    dispatch = StubDispatch(hangs)
    source = TimerSource(timer("app-a", INTERVAL), dispatch, telemetry)
    await source.start()
    await until(lambda: len(dispatch.calls) == 1)
    await source.aclose(grace_s=0.05)
    assert dropped(telemetry, "timer", "shutdown") == 1


async def test_a_dispatch_bug_is_counted(telemetry: Telemetry) -> None:
    def bug(event: Event) -> bytes:
        raise RuntimeError("router bug")

    dispatch = StubDispatch(bug)
    source = TimerSource(timer("app-a", INTERVAL), dispatch, telemetry)
    await source.start()
    await until(lambda: dropped(telemetry, "timer", "internal_error") >= 2)
    await source.aclose()
    assert source.failed >= 2
