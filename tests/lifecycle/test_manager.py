from __future__ import annotations

import asyncio

import pytest

from nfaas.errors import FunctionCrashed, InsufficientCapacity, Overloaded, SandboxStartError
from nfaas.sandboxes.base import Event, SandboxState
from tests.lifecycle.conftest import Rig


async def test_first_event_cold_starts_and_later_events_reuse(rig: Rig) -> None:
    v = rig.version()
    assert (await rig.manager.invoke(v, Event("invoke", b"a"))).body == b"a"
    assert (await rig.manager.invoke(v, Event("invoke", b"b"))).body == b"b"
    stats = rig.telemetry.stats(v.key)
    assert stats.invocations == 2 and stats.cold_starts == 1
    assert len(list(rig.manager.instances())) == 1


async def test_burst_scales_out_to_the_threshold_and_no_further(rig: Rig) -> None:
    v = rig.version("slow", instance_threshold=3, queue_size=100)
    results = await asyncio.gather(
        *(rig.manager.invoke(v, Event("invoke", str(i).encode(), {"sleep": 0.1})) for i in range(9))
    )
    assert sorted(r.body for r in results) == sorted(str(i).encode() for i in range(9))
    assert len(list(rig.manager.instances())) == 3
    assert rig.telemetry.stats(v.key).cold_starts == 3


async def test_concurrency_lets_one_instance_take_several_events(rig: Rig) -> None:
    v = rig.version("slow", instance_threshold=4, concurrency=4)
    await asyncio.gather(
        *(rig.manager.invoke(v, Event("invoke", b"x", {"sleep": 0.1})) for _ in range(4))
    )
    assert len(list(rig.manager.instances())) == 1


async def test_full_queue_is_a_clear_overload_and_is_counted(rig: Rig) -> None:
    v = rig.version("slow", instance_threshold=1, queue_size=2)
    tasks = [
        asyncio.create_task(rig.manager.invoke(v, Event("invoke", b"x", {"sleep": 0.2})))
        for _ in range(5)
    ]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    overloaded = [r for r in results if isinstance(r, Overloaded)]
    assert len(overloaded) == 2
    assert all(o.reason == "queue_full" and "queue size 2" in o.detail for o in overloaded)
    assert rig.telemetry.stats(v.key).outcomes == {"ok": 3, "overloaded": 2}


async def test_queue_deadline_gives_an_overload(rig: Rig) -> None:
    v = rig.version("slow", instance_threshold=1, queue_size=10, queue_timeout_s=0.1)
    slow = asyncio.create_task(rig.manager.invoke(v, Event("invoke", b"x", {"sleep": 0.5})))
    await asyncio.sleep(0.05)
    with pytest.raises(Overloaded) as info:
        await rig.manager.invoke(v, Event("invoke", b"y"))
    assert info.value.reason == "queue_timeout"
    assert (await slow).body == b"x"


async def test_idle_instances_are_deleted_and_release_their_memory(rig: Rig) -> None:
    v = rig.version(idle_period_s=0.1)
    await rig.manager.invoke(v, Event("invoke", b"x"))
    assert rig.capacity.memory_reserved_mb == 64
    await asyncio.sleep(0.3)
    assert list(rig.manager.instances()) == []
    assert rig.capacity.memory_reserved_mb == 0
    assert rig.backend.closed >= 1


async def test_crashed_instance_is_replaced_and_others_keep_serving(rig: Rig) -> None:
    def crash(event: Event) -> bytes:
        raise FunctionCrashed("worker killed by signal 9")

    rig.backend.handlers["crash"] = crash
    bad, good = rig.version("crash", name="bad"), rig.version("echo", name="good")
    await rig.manager.invoke(good, Event("invoke", b"ok"))
    with pytest.raises(FunctionCrashed):
        await rig.manager.invoke(bad, Event("invoke", b"x"))
    assert [i.function for i in rig.manager.instances()] == ["good"]
    assert (await rig.manager.invoke(good, Event("invoke", b"still"))).body == b"still"
    with pytest.raises(FunctionCrashed):
        await rig.manager.invoke(bad, Event("invoke", b"x"))
    assert rig.telemetry.stats(bad.key).outcomes == {"crashed": 2}
    assert rig.capacity.memory_reserved_mb == 64


async def test_pool_is_used_up_to_the_quick_start_count(rig: Rig) -> None:
    rig.pool.resize(4)
    for _ in range(50):
        if rig.pool.snapshot().ready == 4:
            break
        await asyncio.sleep(0.01)
    v = rig.version("slow", instance_threshold=3, max_quick_start=2)
    await asyncio.gather(
        *(rig.manager.invoke(v, Event("invoke", b"x", {"sleep": 0.1})) for _ in range(3))
    )
    from_pool = sorted(i.from_pool for i in rig.manager.instances())
    assert from_pool == [False, True, True]
    assert rig.pool.snapshot().taken == 2


async def test_instantiation_refused_when_the_node_is_full(rig: Rig) -> None:
    rig.capacity.resize(memory_mb=100)
    a, b = rig.version(name="a"), rig.version(name="b")
    await rig.manager.invoke(a, Event("invoke", b"x"))
    with pytest.raises(InsufficientCapacity, match="needs 64 MB"):
        await rig.manager.invoke(b, Event("invoke", b"x"))
    assert rig.capacity.memory_reserved_mb == 64


async def test_load_failure_reaches_the_event_and_leaves_nothing(rig: Rig) -> None:
    v = rig.version("missing-handler")
    with pytest.raises(SandboxStartError, match="no mock handler"):
        await rig.manager.invoke(v, Event("invoke", b"x"))
    assert rig.capacity.memory_reserved_mb == 0
    assert list(rig.manager.instances()) == []


async def test_a_new_version_takes_over_and_the_old_one_drains(rig: Rig) -> None:
    v1, v2 = rig.version("slow", version="1"), rig.version("echo", version="2")
    running = asyncio.create_task(rig.manager.invoke(v1, Event("invoke", b"old", {"sleep": 0.2})))
    await asyncio.sleep(0.05)
    rig.manager.retire(v1.key)
    assert (await rig.manager.invoke(v2, Event("invoke", b"new"))).body == b"new"
    assert (await running).body == b"old"
    await asyncio.sleep(0.15)
    assert [i.version for i in rig.manager.instances()] == ["2"]


async def test_cancelled_cold_start_waiter_leaks_no_slot(rig: Rig) -> None:
    rig.backend.load_delay = 0.05
    v = rig.version(instance_threshold=1, idle_period_s=0.1)
    waiting = asyncio.create_task(rig.manager.invoke(v, Event("invoke", b"x")))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    # The instance it caused serves the next event, and is reaped later with nothing held.
    assert (await rig.manager.invoke(v, Event("invoke", b"next"))).body == b"next"
    await asyncio.sleep(0.3)
    assert list(rig.manager.instances()) == []
    assert rig.capacity.memory_reserved_mb == 0


async def test_instance_that_dies_while_idle_does_not_block_the_function(rig: Rig) -> None:
    v = rig.version(instance_threshold=1, idle_period_s=60, queue_timeout_s=0.2)
    await rig.manager.invoke(v, Event("invoke", b"x"))
    (instance,) = rig.manager.deployment(v).instances
    instance.sandbox.state = SandboxState.FAILED  # as when a worker is OOM-killed between events
    assert (await rig.manager.invoke(v, Event("invoke", b"again"))).body == b"again"
    assert rig.capacity.memory_reserved_mb == 64


async def test_rolling_back_to_a_draining_version_gets_fresh_instances(rig: Rig) -> None:
    v1, v2 = rig.version("slow", version="1", instance_threshold=1), rig.version(version="2")
    long = asyncio.create_task(rig.manager.invoke(v1, Event("invoke", b"long", {"sleep": 0.3})))
    await asyncio.sleep(0.05)
    rig.manager.retire(v1.key)
    await rig.manager.invoke(v2, Event("invoke", b"v2"))
    rig.manager.retire(v2.key)  # roll back: v1 is current again while its old instance drains
    assert await rig.manager.invoke(v1, Event("invoke", b"back", {"sleep": 0}))
    assert (await long).body == b"long"


async def test_quick_start_count_holds_under_overlapping_loads(rig: Rig) -> None:
    rig.backend.load_delay = 0.05
    rig.pool.resize(6)
    for _ in range(100):
        if rig.pool.snapshot().ready == 6:
            break
        await asyncio.sleep(0.01)
    v = rig.version("slow", instance_threshold=5, max_quick_start=1)
    await asyncio.gather(
        *(rig.manager.invoke(v, Event("invoke", b"x", {"sleep": 0.1})) for _ in range(5))
    )
    assert sorted(i.from_pool for i in rig.manager.instances()) == [
        False,
        False,
        False,
        False,
        True,
    ]


async def test_shutdown_during_an_instantiation_leaves_nothing(rig: Rig) -> None:
    rig.backend.load_delay = 0.5
    v = rig.version()
    event = asyncio.create_task(rig.manager.invoke(v, Event("invoke", b"x")))
    await asyncio.sleep(0.05)
    await rig.manager.aclose(grace_s=0.1)
    with pytest.raises(Overloaded):
        await event
    assert rig.backend.prepared == rig.backend.closed
    assert rig.capacity.memory_reserved_mb == 0


async def test_failing_cold_start_is_still_a_cold_start(rig: Rig) -> None:
    def crash(event: Event) -> bytes:
        raise FunctionCrashed("worker exited with status 1")

    rig.backend.handlers["crash"] = crash
    v = rig.version("crash")
    with pytest.raises(FunctionCrashed):
        await rig.manager.invoke(v, Event("invoke", b"x"))
    stats = rig.telemetry.stats(v.key)
    assert (stats.cold_starts, stats.instances_created) == (1, 1)
