"""The bytestream operator: TCP segments back in order, once each."""

from __future__ import annotations

import pytest

from nfaas.nf import NetworkFunction, NFContext, PacketBatch
from tests.nf.kit import TCP, UDP, frame

ISN = 2**32 - 3  # the stream wraps around the sequence space


def segment(seq: int, data: bytes, flags: int = 0x18, sport: int = 5000) -> bytes:
    return frame("10.0.0.1", "10.0.0.2", sport, 80, TCP, data, seq=seq % 2**32, flags=flags)


def run(
    batches: list[list[bytes]], **kw: int
) -> tuple[dict[int, list[bytes]], NetworkFunction, object]:
    streams: dict[int, list[bytes]] = {}

    def on_data(flow: int, data: bytes, ctx: NFContext) -> None:
        if data == b"boom":
            raise RuntimeError("the callback fails on this segment")
        streams.setdefault(flow, []).append(data)

    nf = NetworkFunction("streams")
    nf.pipeline.parse().reassemble(on_data, name="tcp", **kw)
    instance = nf.instance()
    for frames in batches:
        instance.process(PacketBatch.from_frames(frames))
    return streams, nf, instance


def text(streams: dict[int, list[bytes]]) -> list[bytes]:
    return [b"".join(parts) for parts in streams.values()]


def test_out_of_order_retransmitted_and_overlapping_segments() -> None:
    syn = segment(ISN, b"", flags=0x02)
    a, b, c, d = (segment(ISN + 1 + off, data) for off, data in
                  [(0, b"hello "), (6, b"wor"), (9, b"ld, "), (13, b"stream")])  # fmt: skip
    overlap = segment(ISN + 1 + 4, b"o world")  # bytes 4..10, partly new
    fin = segment(ISN + 1 + 19, b"", flags=0x11)
    streams, _, _ = run([[syn, c, a], [a, d, overlap], [b, fin]])
    assert text(streams) == [b"hello world, stream"]
    assert next(iter(streams.values()))[-1] == b""  # the end of the stream


def test_directions_are_separate_streams_and_rst_ends_one() -> None:
    one = [segment(100, b"abc", sport=1), segment(103, b"def", sport=1)]
    two = [segment(7, b"xyz", sport=2), segment(10, b"", flags=0x04, sport=2)]
    streams, _, _ = run([one + two])
    assert sorted(text(streams)) == [b"abcdef", b"xyz"]


def test_too_much_data_past_a_gap_gives_the_gap_up() -> None:
    later = [segment(1000 + 10 + 100 * i, b"x" * 100) for i in range(3)]
    streams, _, instance = run([[segment(1000, b"0123456789"[:5])], later], max_buffered=150)
    assert instance.counters.value("tcp.overflow") == 1  # type: ignore[attr-defined]
    assert text(streams)[0].startswith(b"01234")


@pytest.mark.parametrize("boom_first", [True, False])
def test_a_failing_callback_drops_that_packet_only(boom_first: bool) -> None:
    frames = [segment(1, b"boom"), segment(5, b"fine")] if boom_first else [segment(1, b"fine")]
    frames.append(frame(proto=UDP, payload=b"udp passes"))
    streams, _, instance = run([frames])
    assert instance.counters.value("tcp.errors") == int(boom_first)  # type: ignore[attr-defined]
    assert b"fine" in b"".join(text(streams))
