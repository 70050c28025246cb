"""UDP load generator: a window of outstanding datagrams, bounded in count and time.

Runs in its own process (``python loadgen_udp.py --port P --window W --duration S``)
on loopback only. Each datagram carries a sequence number in its first 8 bytes;
an echo's answer is matched to its send time. Every answer (or a datagram
counted lost after ``--loss-timeout``) lets the next one go, so ``window``
datagrams are in flight at any time. Only datagrams sent after ``--warmup``
seconds are measured. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from typing import Any

import uvloop

HOST = "127.0.0.1"


def percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


class Client(asyncio.DatagramProtocol):
    def __init__(self, args: argparse.Namespace, measure_from: float, stop_at: float) -> None:
        self.padding = b"\0" * max(0, args.payload - 8)
        self.max_count = args.max_count
        self.measure_from = measure_from
        self.stop_at = stop_at
        self.outstanding: dict[int, float] = {}
        self.latencies: list[float] = []
        self.next_seq = 0
        self.sent = 0
        self.lost = 0
        self.sending = True
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport is not registered as an asyncio.DatagramTransport
        self.transport = transport

    def send_one(self) -> None:
        now = time.perf_counter()
        if not self.sending or self.next_seq >= self.max_count or now >= self.stop_at:
            self.sending = False
            return
        assert self.transport is not None
        seq = self.next_seq
        self.next_seq += 1
        self.outstanding[seq] = now
        self.transport.sendto(seq.to_bytes(8, "big") + self.padding)
        if now >= self.measure_from:
            self.sent += 1

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        now = time.perf_counter()
        sent_at = self.outstanding.pop(int.from_bytes(data[:8], "big"), None)
        if sent_at is None:
            return  # already counted lost
        if sent_at >= self.measure_from:
            self.latencies.append(now - sent_at)
        self.send_one()

    def error_received(self, exc: Exception) -> None:
        pass  # e.g. ICMP port unreachable: the sweeper counts the loss

    def sweep(self, loss_timeout: float) -> None:
        """Count datagrams unanswered for ``loss_timeout`` as lost, and send others instead."""
        cutoff = time.perf_counter() - loss_timeout
        for seq, sent_at in list(self.outstanding.items()):
            if sent_at < cutoff:
                del self.outstanding[seq]
                if sent_at >= self.measure_from:
                    self.lost += 1
                self.send_one()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    measure_from = started + args.warmup
    stop_at = measure_from + args.duration
    client = Client(args, measure_from, stop_at)
    transport, _ = await loop.create_datagram_endpoint(
        lambda: client, remote_addr=(HOST, args.port)
    )
    try:
        for _ in range(args.window):
            client.send_one()
        while client.sending or client.outstanding:
            await asyncio.sleep(0.05)
            client.sweep(args.loss_timeout)
            if time.perf_counter() > stop_at + args.loss_timeout + 1:
                break
            if not client.outstanding and client.sending:
                client.send_one()  # everything was lost: keep going
    finally:
        transport.close()
    measured = min(time.perf_counter(), stop_at) - measure_from
    ordered = sorted(client.latencies)
    received = len(ordered)
    ms = 1000.0
    return {
        "window": args.window,
        "sent": client.sent,
        "received": received,
        "lost": client.lost,
        "duration_s": measured,
        "throughput": received / measured if measured > 0 else 0.0,
        "latency_ms": {
            "n": received,
            "p50": percentile(ordered, 50) * ms,
            "p90": percentile(ordered, 90) * ms,
            "p99": percentile(ordered, 99) * ms,
            "min": ordered[0] * ms if ordered else math.nan,
            "max": ordered[-1] * ms if ordered else math.nan,
            "mean": sum(ordered) / received * ms if ordered else math.nan,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--window", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--max-count", type=int, default=2_000_000)
    parser.add_argument("--payload", type=int, default=32)
    parser.add_argument("--loss-timeout", type=float, default=0.5)
    args = parser.parse_args()
    if not 1 <= args.window <= 4096 or args.duration > 120 or args.warmup > 30:
        parser.error("window 1-4096, duration at most 120 s, warm-up at most 30 s")
    print(json.dumps(uvloop.run(run(args))))


if __name__ == "__main__":
    main()
