"""An NF as an nfaas function's handler: events become packets, concurrent events one batch."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from nfaas.nf import NetworkFunction, PacketBatch
from nfaas.nf.function import EventBatcher, NFFunction
from nfaas.nf.io.datagram import join_tunnel, packets_from_events, parse_peer, split_tunnel
from tests.nf.kit import checksums_right, fields, frame


@dataclass
class FakeEvent:
    trigger: str
    body: bytes = b""
    meta: dict[str, Any] = field(default_factory=dict)


def udp_event(body: bytes, peer: str = "127.0.0.1:40000", port: int = 9101) -> FakeEvent:
    return FakeEvent("udp", body, {"peer": peer, "port": port})


def test_events_become_packets_with_right_checksums() -> None:
    batch = packets_from_events([
        ("udp", b"one", {"peer": "127.0.0.1:5000", "port": 9101}),
        ("tcp", b"two", {"peer": "::1:6000", "port": 9102}),
        ("udp", b"three", {"peer": "garbage", "port": 9101}),
    ], local_address="127.0.0.1")  # fmt: skip
    frames = batch.frames()
    assert all(checksums_right(f) for f in frames)
    assert [fields(f)["sport"] for f in frames] == [5000, 6000, 0]
    assert fields(frames[1])["dst"] == "::ffff:7f00:1" and fields(frames[1])["proto"] == 6
    assert [batch.payload(i) for i in range(3)] == [b"one", b"two", b"three"]
    assert parse_peer("[::1]:80") == ("::1", 80)


def test_tunnel_framing_round_trip_and_leftover() -> None:
    frames = [b"a" * 3, b"", b"b" * 300]
    body = join_tunnel(frames)
    assert split_tunnel(body) == (frames, 0)
    assert split_tunnel(body + b"\x00\x09abc") == (frames, 5)


def test_firewall_handler_answers_allowed_datagrams_only(firewall_module: ModuleType) -> None:
    handle = firewall_module.from_environment({
        "FIREWALL_RULES": '[{"action": "deny", "src": "10.66.0.0/16"}, {"action": "allow", "proto": "udp"}]',
    })  # fmt: skip
    assert handle(udp_event(b"hi"), None) == b"hi"
    assert handle(udp_event(b"no", peer="10.66.3.4:999"), None) == b""
    stats = handle(FakeEvent("http"), None)
    assert stats["counters"]["acl.hits"] == [1, 1, 0]
    assert handle(FakeEvent("timer"), None) is None


def test_concurrent_events_are_processed_in_batches(firewall_module: ModuleType) -> None:
    handle = firewall_module.from_environment(
        {"FIREWALL_RULES": '[{"action": "allow", "dport": 9101}]'}
    )
    release = threading.Event()
    answers: dict[int, bytes] = {}
    original = handle.batcher._process

    def slow_first(items: Any) -> list[bytes]:
        release.wait(5)  # hold the first batch so that the others queue up behind it
        return original(items)

    handle.batcher._process = slow_first

    def call(i: int) -> None:
        answers[i] = handle(udp_event(b"%d" % i, peer=f"127.0.0.1:{20000 + i}"), None)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    release.set()
    for t in threads:
        t.join(10)
    assert answers == {i: b"%d" % i for i in range(40)}
    assert handle.batcher.items == 40 and handle.batcher.batches < 40


def test_a_failing_batch_fails_each_of_its_callers() -> None:
    def broken(items: Any) -> list[bytes]:
        raise RuntimeError("the NF itself is broken")

    batcher = EventBatcher(broken, 8)
    try:
        batcher.submit(("udp", b"", {}))
    except RuntimeError as exc:
        assert "broken" in str(exc)
    else:
        raise AssertionError("no error")


def test_tunnel_mode_returns_the_frames_emitted() -> None:
    nf = NetworkFunction("ttl")

    def decrement(batch: PacketBatch, ctx: object) -> None:
        batch.headers["ttl"] -= 1

    nf.pipeline.parse().filter(lambda b, c: b.headers["ttl"] > 1).transform(decrement)
    handle = NFFunction(nf, mode="tunnel")
    frames = [frame(ttl=64), frame(ttl=1), frame("2001:db8::1", "2001:db8::2", ttl=9)]
    reply = handle(udp_event(join_tunnel(frames) + b"\x01"), None)
    out, leftover = split_tunnel(reply)
    assert leftover == 0 and [fields(f)["ttl"] for f in out] == [63, 8]
    assert all(checksums_right(f) for f in out)
    assert handle(FakeEvent("http"), None)["counters"]["malformed.tunnel"] == [1]
    assert np.array_equal(PacketBatch.from_frames(out).lengths, [len(frames[0]), len(frames[2])])
