"""The load generator: bounded schedules, and every message acknowledged by a real broker."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nfaas.experiments.broker import HOST, ProcessBroker
from nfaas.experiments.load import offer_load
from nfaas.experiments.publisher import PublisherPlan, send_schedule


def test_a_constant_schedule_is_bounded_by_count_and_time() -> None:
    by_time = send_schedule(PublisherPlan(HOST, 1, ["t"], rate=800, duration_s=0.5))
    assert len(by_time) == 400 and np.allclose(np.diff(by_time), 1 / 800)
    assert len(send_schedule(PublisherPlan(HOST, 1, ["t"], rate=800, count=10))) == 10


def test_poisson_gaps_vary_as_an_exponential_does() -> None:
    plan = PublisherPlan(HOST, 1, ["t"], rate=5000, arrivals="poisson", duration_s=4.0)
    gaps = np.diff(send_schedule(plan))
    assert abs(gaps.mean() * 5000 - 1) < 0.05
    assert abs(gaps.std() / gaps.mean() - 1) < 0.05
    assert send_schedule(plan)[-1] <= 4.0


async def test_every_message_is_acknowledged_and_the_broker_cpu_is_read(tmp_path: Path) -> None:
    async with ProcessBroker() as broker:
        point = await offer_load(broker, 3, 1500, "poisson", 0.5, 1.0, tmp_path, publishers=2)
    assert point.sent > 500 and point.delivered == point.sent
    assert len(point.latencies) == point.sent and point.percentile_ms(50) < 100
    assert 0 < point.cpu_share < 1
    assert point.broker_memory_bytes > 0
    assert list(tmp_path.glob("*.npz")) == []
