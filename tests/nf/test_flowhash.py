"""The flow hash and flow affinity: the trigger side and the NF agree, instances split flows."""

from __future__ import annotations

import numpy as np

from nfaas.nf import NetworkFunction, PacketBatch
from nfaas.nf.flowhash import flow_hash, flow_hashes, jump_hash, shard_of
from nfaas.nf.state import CounterSet
from tests.nf.kit import TCP, UDP, frame

TUPLES = [
    ("10.0.0.1", "10.0.0.2", 1234, 80, UDP),
    ("10.0.0.2", "10.0.0.1", 80, 1234, UDP),
    ("2001:db8::1", "2001:db8::2", 443, 50000, TCP),
    ("192.0.2.200", "198.51.100.1", 65535, 0, TCP),
]


def headers(tuples: list[tuple[str, str, int, int, int]]) -> np.ndarray:
    batch = PacketBatch.from_frames([frame(s, d, sp, dp, p) for s, d, sp, dp, p in tuples])
    batch.parse()
    return batch.headers


def test_scalar_and_vectorised_hashes_agree() -> None:
    vectorised = flow_hashes(headers(TUPLES)).tolist()
    assert vectorised == [flow_hash(*t) for t in TUPLES]
    symmetric = flow_hashes(headers(TUPLES), symmetric=True).tolist()
    assert symmetric == [flow_hash(*t, symmetric=True) for t in TUPLES]


def test_symmetric_hash_joins_both_directions() -> None:
    plain = flow_hashes(headers(TUPLES[:2]))
    both = flow_hashes(headers(TUPLES[:2]), symmetric=True)
    assert plain[0] != plain[1] and both[0] == both[1]


def test_shards_are_jump_hashes_and_move_little_when_growing() -> None:
    hashes = np.random.default_rng(1).integers(0, 2**63, 4000, dtype=np.uint64) * np.uint64(2)
    four = shard_of(hashes, 4)
    assert four.tolist()[:50] == [jump_hash(int(h), 4) for h in hashes[:50]]
    assert np.bincount(four).min() > 850
    five = shard_of(hashes, 5)
    moved = four != five
    assert set(five[moved].tolist()) == {4}  # flows only move to the new instance
    assert 0.15 < moved.mean() < 0.25


def test_scaled_out_instances_count_what_one_would() -> None:
    nf = NetworkFunction("count")
    nf.counter("by_port", 8)
    nf.table("flows")

    def remember(batch: PacketBatch, ctx: object) -> None:
        c = ctx  # NFContext
        c.counters.add_each("by_port", batch.headers["dport"] % 8)  # type: ignore[attr-defined]
        c.table("flows").upsert(flow_hashes(batch.headers), 1, 0.0)  # type: ignore[attr-defined]

    nf.pipeline.parse().inspect(remember)
    rng = np.random.default_rng(2)
    frames = [frame(f"10.0.{rng.integers(4)}.{rng.integers(250)}", "10.9.0.1", int(rng.integers(1024, 1100)),
                    int(rng.integers(0, 64))) for _ in range(600)]  # fmt: skip
    single = nf.instance()
    single.process(PacketBatch.from_frames(frames))
    batch = PacketBatch.from_frames(frames)
    batch.parse()
    shard = shard_of(flow_hashes(batch.headers), 3)
    instances = [nf.instance(shard=i, shards=3) for i in range(3)]
    for i, instance in enumerate(instances):
        instance.process(
            PacketBatch.from_frames([f for f, s in zip(frames, shard, strict=True) if s == i])
        )
    merged = CounterSet.merged(i.counters for i in instances)
    assert merged.snapshot()["by_port"] == single.counters.snapshot()["by_port"]
    tables = [set(i.ctx.table("flows").keys.tolist()) for i in instances]
    assert not (tables[0] & tables[1]) and not (tables[1] & tables[2])  # each flow in one place
    assert set().union(*tables) == set(single.ctx.table("flows").keys.tolist())
