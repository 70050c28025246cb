"""The C-V2X message service (IoT paper, section 5.1): CAMs, DENMs fanned out by area, latency."""

from __future__ import annotations

import json
import time

import pytest

from tests.broker import Subscriber
from tests.examples.conftest import Live, eventually

pytestmark = pytest.mark.timeout(60)

#: about 111 m per 0.001 degree of latitude
VEHICLES = {"near-1": (48.1000, 11.5000), "near-2": (48.1005, 11.5004), "far": (48.1200, 11.5000)}


def cam(station: str, lat: float, lon: float) -> bytes:
    return json.dumps({"station": station, "lat": lat, "lon": lon, "speed": 13.9}).encode()


async def test_denms_reach_the_vehicles_in_their_area_within_budget(live: Live) -> None:
    await live.onboard("cv2x-messages")
    await live.connected("cv2x-messages")
    alerts = Subscriber(live.broker, "v2x/alerts")
    try:
        for _ in range(3):  # periodic CAMs, QoS 0
            for station, (lat, lon) in VEHICLES.items():
                live.broker.publish(f"v2x/cam/{station}", [cam(station, lat, lon)], qos=0)
        await eventually(lambda: _stations(live, 3))
        sent: list[float] = []
        for n in range(5):
            sent.append(time.time())
            denm = {"station": "near-1", "cause": "accident", "lat": 48.1001, "lon": 11.5001,
                    "radius_m": 200, "sent_at": sent[-1], "n": n}  # fmt: skip
            live.broker.publish("v2x/denm/near-1", [json.dumps(denm).encode()])
        await eventually(lambda: len(alerts.messages) == 5)
        for (_, payload, received), sent_at in zip(alerts.messages, sent, strict=True):
            alert = json.loads(payload)
            assert alert["recipients"] == ["near-2"]  # the sender and the far vehicle excluded
            assert alert["latency_ms"] >= 0
            # the end-to-end latency, measured here at the receiving vehicle
            assert received - sent_at < 5
        figures = await live.get("/fn/cv2x-messages/v2x")
        assert figures["counts"] == {"cam": 9, "denm": 5, "invalid": 0}
        assert figures["budget_ms"] == 100 and figures["latency_ms"]["p50"] is not None
        assert 0 <= figures["within_budget"] <= 1
    finally:
        alerts.close()


async def _stations(live: Live, count: int) -> bool:
    figures = await live.get("/fn/cv2x-messages/v2x")
    return bool(figures["stations"] == count)
