"""A Sangrenel-like MQTT load generator: one process, QoS 1, batch 1, timeout-based loss.

Run as ``python -m nfaas.experiments.publisher PLAN.json OUT.npz``; it prints a
JSON summary on stdout and writes every acknowledgement latency (seconds, the
PUBLISH's send to its PUBACK's arrival) and every send time to ``OUT.npz``.

It sends ``rate`` messages/s spread over its topics (round robin), each message
on its own (batch 1), at constant or Poisson (exponential gaps) arrivals. A late
send goes out at once, so a generator that cannot keep up bursts; its lag is
reported so that the harness can tell a slow generator from a slow broker. It
stops by itself at ``count`` messages or ``duration_s``, whichever comes first,
then waits ``ack_timeout_s`` for the last acknowledgements. A message is
delivered when its PUBACK arrives within ``ack_timeout_s`` of its send (Sangrenel
counts a message lost when Kafka's ACK misses the producer's timeout).
"""

from __future__ import annotations

import json
import select
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from nfaas.errors import ExperimentError
from nfaas.experiments.mqtt_wire import (
    MAX_PACKET_ID,
    PubackReader,
    PublishFramer,
    check_connack,
    connect_packet,
)

Arrivals = Literal["constant", "poisson"]
SEND_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class PublisherPlan:
    host: str
    port: int
    topics: list[str]
    #: messages per second over all the topics of this publisher
    rate: float
    message_bytes: int = 800
    arrivals: Arrivals = "constant"
    duration_s: float = 10.0
    count: int = 1_000_000
    ack_timeout_s: float = 1.0
    seed: int = 1
    client_id: str = field(default="nfaas-load")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> PublisherPlan:
        return cls(**json.loads(text))


@dataclass(slots=True)
class PublisherRun:
    """What one run of the generator saw; latencies and send times go to the .npz file."""

    sent: int = 0
    delivered: int = 0
    late: int = 0
    elapsed_s: float = 0.0
    #: how far behind its schedule the generator was at its latest send, seconds
    max_lag_s: float = 0.0
    cpu_s: float = 0.0


def send_schedule(plan: PublisherPlan) -> np.ndarray:
    """Offsets (s) from the start at which each message is due; bounded by count and time."""
    n = int(min(plan.count, max(1, plan.rate * plan.duration_s)))
    if plan.arrivals == "constant":
        return np.arange(n, dtype=np.float64) / plan.rate
    gaps = np.random.default_rng(plan.seed).exponential(1.0 / plan.rate, n)
    offsets = np.cumsum(gaps) - gaps[0]
    return np.asarray(offsets[offsets <= plan.duration_s], dtype=np.float64)


def _connect(plan: PublisherPlan) -> socket.socket:
    sock = socket.create_connection((plan.host, plan.port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # batch 1: no coalescing
    sock.sendall(connect_packet(plan.client_id))
    check_connack(sock.recv(4))
    # a broker that stops reading fails the send after this, instead of hanging the run
    sock.settimeout(SEND_TIMEOUT_S)
    return sock


class _Acks:
    """Send times by packet id, and the latencies of the PUBACKs that came in time."""

    def __init__(self, n: int, timeout_s: float) -> None:
        self.sent_at = np.full(MAX_PACKET_ID + 1, np.nan)
        self.latencies = np.empty(n)
        self.delivered = 0
        self.late = 0
        self.timeout_s = timeout_s
        self.reader = PubackReader()

    def take(self, data: bytes, now: float) -> None:
        for packet_id in self.reader.feed(data):
            sent = self.sent_at[packet_id]
            self.sent_at[packet_id] = np.nan
            if sent != sent:  # NaN: an unknown or already answered id
                continue
            took = now - sent
            if took <= self.timeout_s:
                self.latencies[self.delivered] = took
                self.delivered += 1
            else:
                self.late += 1

    def outstanding(self) -> int:
        return int(np.count_nonzero(~np.isnan(self.sent_at)))


def _read(sock: socket.socket, acks: _Acks, wait_s: float) -> None:
    ready, _, _ = select.select([sock], [], [], max(0.0, wait_s))
    if not ready:
        return
    data = sock.recv(1 << 16)
    if not data:
        raise ExperimentError("the broker closed the connection")
    acks.take(data, time.monotonic())


def run(plan: PublisherPlan) -> tuple[PublisherRun, np.ndarray, np.ndarray]:
    """Publish the plan; returns the run, the latencies of delivered messages, the send times."""
    due = send_schedule(plan)
    payload = bytes(plan.message_bytes)
    framers = [PublishFramer(topic, payload) for topic in plan.topics]
    acks = _Acks(len(due), plan.ack_timeout_s)
    sends = np.empty(len(due))
    sock = _connect(plan)
    result = PublisherRun()
    cpu0 = time.process_time()
    start = time.monotonic()
    try:
        for i, offset in enumerate(due):
            while (now := time.monotonic()) < start + offset:
                _read(sock, acks, start + offset - now)
            packet_id = i % MAX_PACKET_ID + 1  # 0 is not a valid packet id
            acks.sent_at[packet_id] = sends[i] = time.monotonic()
            sock.sendall(framers[i % len(framers)].packet(packet_id))
            result.max_lag_s = max(result.max_lag_s, sends[i] - start - offset)
            _read(sock, acks, 0.0)
        deadline = time.monotonic() + plan.ack_timeout_s
        while acks.outstanding() and (now := time.monotonic()) < deadline:
            _read(sock, acks, deadline - now)
    finally:
        sock.close()
    result.sent, result.delivered, result.late = len(due), acks.delivered, acks.late
    result.elapsed_s = time.monotonic() - start
    result.cpu_s = time.process_time() - cpu0
    return result, acks.latencies[: acks.delivered], sends - start


def main(argv: list[str]) -> int:
    plan = PublisherPlan.from_json(Path(argv[0]).read_text())
    result, latencies, sends = run(plan)
    np.savez(argv[1], latencies=latencies, sends=sends)
    print(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
