"""Idle deletion and pre-warming follow a keep-alive policy (nfaas.keepalive), on a held clock.

The manager's reaper is not started here: each test calls ``reap_idle(now)``
with the time it wants, and arrivals carry their own stamps, so minutes of
policy time pass in milliseconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from nfaas.lifecycle.infra import NodeCapacity
from nfaas.lifecycle.manager import FunctionManager
from nfaas.lifecycle.pools import RuntimePool
from nfaas.sandboxes.base import Event
from nfaas.sandboxes.mock import MockBackend
from nfaas.telemetry.metrics import Telemetry
from tests.lifecycle.conftest import Rig, make_version

MIN = 60.0


@pytest.fixture
async def held() -> AsyncIterator[Rig]:
    backend = MockBackend({"echo": lambda e: e.body})
    capacity = NodeCapacity(memory_mb=1024, cpu=2)
    telemetry = Telemetry()
    pool = RuntimePool("mock-pool", "mock:1", backend, capacity, size=0, sandbox_memory_mb=8)
    manager = FunctionManager(capacity, telemetry, lambda n: backend, lambda v: pool)
    yield Rig(backend, capacity, telemetry, manager, pool, make_version)
    await manager.aclose(grace_s=0.5)
    await pool.aclose()


async def invoke_at(rig: Rig, version: Any, at: float) -> None:
    await rig.manager.invoke(version, Event("invoke", b"x"), arrival=at)


async def settle(rig: Rig, instances: int) -> None:
    for _ in range(100):
        if len(list(rig.manager.instances())) == instances:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"expected {instances} instances, have {list(rig.manager.instances())}")


def actions(rig: Rig, action: str) -> float:
    text = rig.telemetry.prometheus().decode()
    for line in text.splitlines():
        if line.startswith("nfaas_keepalive_actions_total{") and f'action="{action}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_without_a_policy_the_idle_period_still_decides(held: Rig) -> None:
    v = held.version(idle_period_s=30)
    t0 = time.monotonic()
    await invoke_at(held, v, t0)
    assert held.manager.reap_idle(t0 + 10) == 0
    assert held.manager.reap_idle(t0 + 31) == 1
    assert list(held.manager.keepalive_decisions()) == []


async def test_fixed_policy_keeps_for_its_window_then_unloads(held: Rig) -> None:
    v = held.version(keepalive={"policy": "fixed", "parameters": {"keep_alive_min": 10}})
    t0 = time.monotonic()
    await invoke_at(held, v, t0)
    assert held.manager.reap_idle(t0 + 9 * MIN) == 0  # idle_period_s (60 s) no longer rules
    assert len(list(held.manager.instances())) == 1
    assert held.manager.reap_idle(t0 + 10 * MIN + 1) == 1
    assert held.capacity.memory_reserved_mb == 0
    assert actions(held, "unload") == 1.0


async def test_hybrid_unloads_after_a_timer_tick_and_prewarms_before_the_next(held: Rig) -> None:
    v = held.version(keepalive={"policy": "hybrid"})
    t0 = time.monotonic() - 3600
    for tick in range(10):  # a 5-minute timer
        await invoke_at(held, v, t0 + tick * 5 * MIN)
    assert held.manager.keepalive.refresh_now() == 1
    last = t0 + 45 * MIN
    (info,) = held.manager.keepalive_decisions(now=last)
    assert (info.policy, info.mode, info.prewarm_s, info.keepalive_s) == (
        "hybrid",
        "histogram",
        240,
        120,
    )

    held.manager.reap_idle(last + 1 * MIN)  # before the window: unloaded
    assert list(held.manager.instances()) == []
    held.manager.reap_idle(last + 4 * MIN + 1)  # the window opens: one instance pre-warmed
    await settle(held, 1)
    assert actions(held, "prewarm") == 1.0
    held.manager.reap_idle(last + 4 * MIN + 30)  # no second one for the same window
    await asyncio.sleep(0.02)
    assert len(list(held.manager.instances())) == 1

    cold_before = held.telemetry.stats(v.key).cold_starts
    await invoke_at(held, v, last + 5 * MIN)  # the next tick finds it warm
    assert held.telemetry.stats(v.key).cold_starts == cold_before
    text = held.telemetry.prometheus().decode()
    assert 'nfaas_keepalive_prewarm_seconds{app="app",function="fn",mode="histogram"' in text


async def test_idle_instances_beyond_ready_fall_back_to_the_idle_period(held: Rig) -> None:
    held.backend.handlers["slow"] = _slow
    v = held.version("slow", instance_threshold=3, idle_period_s=30, keepalive={"policy": "fixed"})
    t0 = time.monotonic()
    await asyncio.gather(
        *(held.manager.invoke(v, Event("invoke", b""), arrival=t0) for _ in range(3))
    )
    assert len(list(held.manager.instances())) == 3
    now = time.monotonic()
    assert held.manager.reap_idle(now + 1) == 0
    assert held.manager.reap_idle(now + 31) == 2  # one held ready for the window
    assert len(list(held.manager.instances())) == 1


async def test_a_retired_version_drains_whatever_its_policy_said(held: Rig) -> None:
    v = held.version(keepalive={"policy": "fixed", "parameters": {"keep_alive_min": 60}})
    t0 = time.monotonic()
    await invoke_at(held, v, t0)
    held.manager.retire(v.key)
    held.manager.reap_idle(t0 + 1)
    assert list(held.manager.instances()) == []


async def _slow(event: Event) -> bytes:
    await asyncio.sleep(0.05)
    return b"ok"
