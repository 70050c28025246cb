"""One load point: publisher processes against a broker, with the broker's CPU read around them.

The publishers (``nfaas.experiments.publisher``) are separate processes on
loopback, each bounded by rate, count and time and ending by itself; a
publisher that outlives its plan by ``GRACE_S`` is killed and the point fails.
A publisher takes at most ``TOPICS_PER_PUBLISHER`` topics (6,400 messages/s at
the paper's rate), so that the generator keeps up and its own lag stays small;
each run reports that lag.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nfaas.errors import ExperimentError
from nfaas.experiments.broker import HOST, BrokerHost
from nfaas.experiments.publisher import Arrivals, PublisherPlan

#: the paper's Sangrenel load (section 5.2.2): 800-byte messages, 5.12 Mbit/s per topic
MESSAGE_BYTES = 800
MBIT_PER_TOPIC = 5.12
RATE_PER_TOPIC = MBIT_PER_TOPIC * 1e6 / (MESSAGE_BYTES * 8)  # 800 messages/s
TOPICS_PER_PUBLISHER = 8
GRACE_S = 20.0


@dataclass(frozen=True, slots=True)
class LoadPoint:
    """What one load point measured; latencies in seconds, CPU share in cores."""

    offered_rate: float
    sent: int
    delivered: int
    cpu_share: float
    broker_memory_bytes: int
    latencies: np.ndarray
    #: the send times of every publisher (s from its start), for the arrivals' variation
    sends: list[np.ndarray]
    generator_max_lag_s: float
    generator_cpu_s: float
    duration_s: float

    @property
    def delivery(self) -> float:
        return self.delivered / self.sent if self.sent else math.nan

    @property
    def offered_mbit_s(self) -> float:
        return self.offered_rate * MESSAGE_BYTES * 8 / 1e6

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1e3 if len(self.latencies) else math.nan

    def mean_ms(self) -> float:
        return float(self.latencies.mean()) * 1e3 if len(self.latencies) else math.nan


def _plans(
    port: int, topics: int, rate: float, arrivals: Arrivals, duration_s: float,
    ack_timeout_s: float, seed: int, publishers: int | None,
) -> list[PublisherPlan]:  # fmt: skip
    """Topics split over publishers; ``rate`` is the total messages/s."""
    names = [f"nfaas/load/{i}" for i in range(topics)]
    count = publishers or max(1, math.ceil(topics / TOPICS_PER_PUBLISHER))
    groups = [names[i::count] for i in range(count)]
    return [
        PublisherPlan(
            HOST, port, group, rate * len(group) / topics, MESSAGE_BYTES, arrivals, duration_s,
            ack_timeout_s=ack_timeout_s, seed=seed * 1000 + i, client_id=f"nfaas-load-{seed}-{i}",
        )
        for i, group in enumerate(groups)
    ]  # fmt: skip


async def _publish(plan: PublisherPlan, folder: Path, index: int) -> tuple[dict[str, float], Path]:
    plan_path, data = folder / f"plan-{index}.json", folder / f"latencies-{index}.npz"
    plan_path.write_text(plan.to_json())
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nfaas.experiments.publisher", str(plan_path), str(data),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(
            process.communicate(), plan.duration_s + plan.ack_timeout_s + GRACE_S
        )
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    if process.returncode != 0:
        raise ExperimentError(f"a publisher failed: {err.decode(errors='replace')[-400:]}")
    summary: dict[str, float] = json.loads(out)
    return summary, data


async def offer_load(
    broker: BrokerHost, topics: int, rate: float, arrivals: Arrivals, duration_s: float,
    ack_timeout_s: float, folder: Path, seed: int = 1, publishers: int | None = None,
) -> LoadPoint:  # fmt: skip
    """Offer ``rate`` messages/s over ``topics`` topics to ``broker`` for ``duration_s``.

    ``publishers`` fixes the number of publisher processes (one keeps the arrival
    process exactly constant or Poisson; several superpose theirs).
    """
    folder.mkdir(parents=True, exist_ok=True)
    plans = _plans(broker.port, topics, rate, arrivals, duration_s, ack_timeout_s, seed, publishers)
    before = broker.usage()
    t0 = time.monotonic()
    runs = await asyncio.gather(*(_publish(p, folder, i) for i, p in enumerate(plans)))
    wall = time.monotonic() - t0
    after = broker.usage()
    latencies, sends = [], []
    for _, data in runs:
        with np.load(data) as arrays:
            latencies.append(arrays["latencies"])
            sends.append(arrays["sends"])
        data.unlink()
    busy = max(float(s["elapsed_s"]) for s, _ in runs)
    return LoadPoint(
        offered_rate=rate,
        sent=int(sum(s["sent"] for s, _ in runs)),
        delivered=int(sum(s["delivered"] for s, _ in runs)),
        cpu_share=(after.cpu_s - before.cpu_s) / max(min(busy, wall), 1e-9),
        broker_memory_bytes=after.memory_bytes,
        latencies=np.concatenate(latencies),
        sends=sends,
        generator_max_lag_s=max(float(s["max_lag_s"]) for s, _ in runs),
        generator_cpu_s=sum(float(s["cpu_s"]) for s, _ in runs),
        duration_s=duration_s,
    )
