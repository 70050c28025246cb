"""Flow affinity (``scaling.affinity: flow``): the placement, and function management with it."""

from __future__ import annotations

import asyncio
import random

import pytest

from nfaas.errors import Overloaded
from nfaas.lifecycle.affinity import flow_of, owner
from nfaas.lifecycle.deployment import FunctionDeployment
from nfaas.lifecycle.instances import FunctionInstance
from nfaas.nf.flowhash import flow_hashes
from nfaas.nf.io.datagram import packets_from_events
from nfaas.sandboxes.base import Event, SandboxState
from tests.lifecycle.conftest import Rig


def udp(peer_port: int, body: bytes = b"x", *, peer: str = "127.0.0.1") -> Event:
    return Event("udp", body, {"peer": f"{peer}:{peer_port}", "port": 9000})


class Named:
    def __init__(self, id: str) -> None:
        self.id = id


def test_flow_of_a_trigger_event_is_the_hash_the_nf_computes_for_its_packet() -> None:
    events = [udp(4000), udp(4001), Event("tcp", b"", {"peer": "::1:5000", "port": 80})]
    batch = packets_from_events([(e.trigger, e.body, e.meta) for e in events])
    assert [flow_of(e) for e in events] == [int(h) for h in flow_hashes(batch.headers)]
    assert flow_of(udp(4000, b"other body")) == flow_of(udp(4000))
    assert len({flow_of(udp(4000)), flow_of(udp(4001)), flow_of(udp(4000, peer="10.0.0.9"))}) == 3


def test_events_without_a_flow_have_none() -> None:
    assert flow_of(Event("http", b"x", {"headers": {}})) is None
    assert flow_of(Event("mqtt", b"x", {"topic": "a/b"})) is None
    assert flow_of(Event("tcp", b"x", {"peer": "", "port": 80})) is None


def test_adding_an_instance_moves_about_one_flow_in_n_all_to_it() -> None:
    rng = random.Random(7)
    flows = [rng.getrandbits(64) for _ in range(4000)]
    members = [Named(f"fn-{i}") for i in range(4)]
    before = {f: owner(f, members) for f in flows}
    added = Named("fn-new")
    after = {f: owner(f, [*members, added]) for f in flows}
    moved = [f for f in flows if after[f] is not before[f]]
    assert all(after[f] is added for f in moved)
    assert 0.15 < len(moved) / len(flows) < 0.25  # 1/5 expected


def test_deleting_an_instance_moves_only_its_flows_spread_over_the_rest() -> None:
    rng = random.Random(8)
    flows = [rng.getrandbits(64) for _ in range(4000)]
    members = [Named(f"fn-{i}") for i in range(4)]
    before = {f: owner(f, members) for f in flows}
    gone = members[1]
    after = {f: owner(f, [m for m in members if m is not gone]) for f in flows}
    assert all(after[f] is before[f] for f in flows if before[f] is not gone)
    went = [after[f] for f in flows if before[f] is gone]
    shares = [went.count(m) / len(went) for m in members if m is not gone]
    assert all(0.25 < s < 0.42 for s in shares)  # 1/3 each expected
    assert owner(1, []) is None


async def scaled(rig: Rig, instances: int, **scaling: object) -> FunctionDeployment:
    """A flow-affinity deployment with ``instances`` ready instances, all idle."""
    v = rig.version("slow", affinity="flow", instance_threshold=instances, **scaling)
    deployment = rig.manager.deployment(v)
    held = await asyncio.gather(*(deployment.acquire() for _ in range(instances)))
    for instance, _ in held:
        deployment.release(instance)
    assert len(deployment.instances) == instances
    return deployment


def flow_on(deployment: FunctionDeployment, instance: FunctionInstance) -> int:
    """A flow the deployment places on ``instance``."""
    return next(
        flow
        for port in range(1000, 9000)
        if owner(flow := flow_of(udp(port)) or 0, deployment.instances) is instance
    )


async def test_every_event_of_a_flow_reaches_its_instance_and_flows_spread(rig: Rig) -> None:
    deployment = await scaled(rig, 3)
    seen: dict[int, set[str]] = {}
    rng = random.Random(3)
    for port in [rng.randrange(1024, 65536) for _ in range(60)] * 3:
        flow = flow_of(udp(port))
        assert flow is not None
        instance, cold = await deployment.acquire(flow)
        seen.setdefault(flow, set()).add(instance.id)
        assert instance is owner(flow, deployment.instances) and not cold
        deployment.release(instance)
    assert all(len(ids) == 1 for ids in seen.values())
    assert len(set().union(*seen.values())) == 3


async def test_a_busy_instance_queues_its_flow_while_others_are_free(rig: Rig) -> None:
    deployment = await scaled(rig, 2, queue_size=1)
    busy = deployment.instances[0]
    flow = flow_on(deployment, busy)
    holding, _ = await deployment.acquire(flow)
    assert holding is busy
    waiting = asyncio.create_task(deployment.acquire(flow))
    await asyncio.sleep(0.05)
    assert not waiting.done() and deployment.counts()["queued"] == 1
    assert deployment.instances[1].free_slots == 1  # not taken by the flow
    with pytest.raises(Overloaded) as info:  # the queue is full: no spilling to the other
        await deployment.acquire(flow)
    assert info.value.reason == "queue_full"
    deployment.release(holding)
    instance, _ = await asyncio.wait_for(waiting, 1)
    assert instance is busy
    deployment.release(instance)


async def test_a_deleted_instance_hands_its_waiting_flows_to_the_others(rig: Rig) -> None:
    deployment = await scaled(rig, 3)
    doomed = deployment.instances[0]
    flow = flow_on(deployment, doomed)
    holding, _ = await deployment.acquire(flow)
    waiting = asyncio.create_task(deployment.acquire(flow))
    await asyncio.sleep(0.02)
    doomed.sandbox.state = SandboxState.FAILED  # dies while serving
    deployment.release(holding)
    instance, _ = await asyncio.wait_for(waiting, 1)
    assert instance is not doomed and instance is owner(flow, deployment.instances)
    assert doomed not in deployment.instances
    deployment.release(instance)


async def test_a_busy_flow_scales_out_to_the_threshold_and_keeps_serving(rig: Rig) -> None:
    v = rig.version("slow", affinity="flow", instance_threshold=3, queue_size=100)
    events = [udp(port, b"x") for port in range(5000, 5012) for _ in range(3)]
    for e in events:
        e.meta["sleep"] = 0.05
    results = await asyncio.gather(*(rig.manager.invoke(v, e) for e in events))
    assert all(r.body == b"x" for r in results)
    assert len(list(rig.manager.instances())) == 3
    # with the membership settled, one flow's events all go to one instance
    served = {i.id: i.served for i in rig.manager.instances()}
    for _ in range(10):
        await rig.manager.invoke(v, udp(6000, b"y"))
    grew = [i.id for i in rig.manager.instances() if i.served != served[i.id]]
    assert len(grew) == 1 and sum(i.served for i in rig.manager.instances()) == 36 + 10


async def test_events_without_a_flow_take_any_free_instance(rig: Rig) -> None:
    deployment = await scaled(rig, 2)
    flow = flow_on(deployment, deployment.instances[0])
    holding, _ = await deployment.acquire(flow)
    other, _ = await deployment.acquire(None)  # an HTTP event: any free slot
    assert other is deployment.instances[1]
    deployment.release(holding)
    deployment.release(other)
