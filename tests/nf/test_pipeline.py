"""Operator graphs: packet processing, control flow, error isolation, outputs."""

from __future__ import annotations

import numpy as np
import pytest

from nfaas.errors import GraphError
from nfaas.nf import NetworkFunction, NFContext, PacketBatch, Pipeline
from tests.nf.kit import TCP, UDP, checksums_right, fields, frame


def traffic(n: int = 12) -> PacketBatch:
    return PacketBatch.from_frames(
        [
            frame(
                f"10.0.0.{i + 1}",
                "10.0.1.1",
                1000 + i,
                53 if i % 2 else 80,
                UDP if i % 3 else TCP,
                f"#{i}".encode(),
            )
            for i in range(n)
        ]
    )


def payloads(batch: PacketBatch) -> list[bytes]:
    return [batch.payload(i) for i in range(len(batch))]


def test_parse_filter_transform_emit() -> None:
    nf = NetworkFunction("demo")

    def nat(batch: PacketBatch, ctx: NFContext) -> None:
        batch.headers["sport"] = 40000 + np.arange(len(batch))

    (nf.pipeline.parse().filter(lambda b, c: b.headers["dport"] == 53, name="dns")
        .transform(nat).emit("out"))  # fmt: skip
    instance = nf.instance()
    out = instance.process(traffic())["out"]
    assert payloads(out) == [b"#1", b"#3", b"#5", b"#7", b"#9", b"#11"]
    frames = out.frames()
    assert [fields(f)["sport"] for f in frames] == list(range(40000, 40006))
    assert all(checksums_right(f) for f in frames)
    counters = instance.counters
    assert counters.value("received") == 12 and counters.value("dns.dropped") == 6
    assert counters.value("port.out") == 6


def test_map_adds_a_column_and_end_of_pipeline_is_port_out() -> None:
    nf = NetworkFunction("demo")
    nf.pipeline.parse().map(lambda b, c: b.headers["sport"] % 7, into="bucket")
    out = nf.instance().process(traffic())["out"]
    assert out.meta["bucket"].tolist() == [(1000 + i) % 7 for i in range(12)]


def test_group_by_branches_emit_or_merge_in_arrival_order() -> None:
    nf = NetworkFunction("demo")
    tcp = Pipeline().emit("tcp")
    udp = Pipeline().map(lambda b, c: np.full(len(b), 1), into="seen")
    nf.pipeline.parse().group_by(lambda b, c: (b.headers["proto"] == UDP).astype(int), [tcp, udp])
    nf.pipeline.map(lambda b, c: np.arange(len(b)), into="after")
    outputs = nf.instance().process(traffic())
    assert payloads(outputs["tcp"]) == [b"#0", b"#3", b"#6", b"#9"]
    merged = outputs["out"]
    assert payloads(merged) == [f"#{i}".encode() for i in range(12) if i % 3]
    assert merged.meta["seen"].tolist() == [1] * 8
    assert "_arrival" not in merged.meta


def test_group_by_unknown_branch_is_counted_and_dropped() -> None:
    nf = NetworkFunction("demo")
    nf.pipeline.parse().group_by(
        lambda b, c: b.headers["sport"] - 1000, [Pipeline(), Pipeline()], name="g"
    )
    instance = nf.instance()
    assert payloads(instance.process(traffic(5))["out"]) == [b"#0", b"#1"]
    assert instance.counters.value("g.unmatched") == 3


def test_a_callable_that_raises_on_one_packet_costs_that_packet_only() -> None:
    def picky(batch: PacketBatch, ctx: NFContext) -> np.ndarray:
        if (batch.headers["sport"] == 1004).any():
            raise ValueError("I do not like port 1004")
        return np.ones(len(batch), dtype=bool)

    def rewrite(batch: PacketBatch, ctx: NFContext) -> None:
        if (batch.headers["sport"] == 1007).any():
            raise KeyError("nor 1007")
        batch.headers["dport"] = 9999

    nf = NetworkFunction("demo")
    nf.pipeline.parse().filter(picky, name="picky").transform(rewrite, name="rw").emit()
    instance = nf.instance()
    out = instance.process(traffic())["out"]
    assert payloads(out) == [f"#{i}".encode() for i in range(12) if i not in (4, 7)]
    assert all(fields(f)["dport"] == 9999 and checksums_right(f) for f in out.frames())
    assert instance.counters.value("picky.errors") == 1
    assert instance.counters.value("rw.errors") == 1


def test_malformed_frames_are_counted_by_reason() -> None:
    nf = NetworkFunction("demo")
    nf.pipeline.parse()
    instance = nf.instance()
    batch = PacketBatch.from_frames([frame(), b"\x00" * 5, frame()[:30], frame()])
    assert len(instance.process(batch)["out"]) == 2
    assert instance.counters.value("malformed.truncated_ethernet") == 1
    assert instance.counters.value("malformed.truncated_ip") == 1


def test_graph_errors() -> None:
    with pytest.raises(GraphError, match="nothing may follow"):
        Pipeline().emit("a").parse()
    nf = NetworkFunction("demo")
    nf.pipeline.parse().transform(lambda b, c: None, name="x").filter(lambda b, c: True, name="x")
    with pytest.raises(GraphError, match="two operators"):
        nf.instance()
    bad = NetworkFunction("demo")
    bad.pipeline.map(lambda b, c: np.zeros(3), into="wrong")
    with pytest.raises(GraphError, match="3 values for 12 packets"):
        bad.instance().process(traffic())
    unparsed = NetworkFunction("demo")
    unparsed.pipeline.transform(lambda b, c: None)
    with pytest.raises(GraphError, match="parse"):
        unparsed.instance().process(traffic())


def test_instances_have_state_of_their_own() -> None:
    nf = NetworkFunction("demo")
    nf.counter("seen")
    nf.pipeline.parse().inspect(lambda b, c: c.counters.add("seen", len(b)))
    one, two = nf.instance(), nf.instance()
    one.process(traffic(3))
    assert (one.counters.value("seen"), two.counters.value("seen")) == (3, 0)


def test_timers_run_between_batches_on_the_instance_clock() -> None:
    now = [100.0]
    ticks: list[float] = []
    nf = NetworkFunction("demo")
    nf.every(1.0, lambda ctx: ticks.append(ctx.now), name="tick")
    nf.every(2.0, lambda ctx: 1 / 0, name="broken")
    nf.pipeline.parse()
    instance = nf.instance(clock=lambda: now[0])
    instance.process(traffic(1))
    assert ticks == []
    now[0] = 101.0
    instance.process(traffic(1))
    now[0] = 105.5  # far behind: a periodic task runs once, not once per missed period
    instance.tick()
    assert ticks == [101.0, 105.5]
    stats = instance.stats()
    assert stats["timers"] == {"tick": 2, "broken": 1} and stats["timer_errors"] == {"broken": 1}
    instance.ctx.after(0.5, lambda ctx: ticks.append(-1.0))
    now[0] = 106.2
    instance.tick()
    instance.tick()
    assert ticks == [101.0, 105.5, 106.2, -1.0]
