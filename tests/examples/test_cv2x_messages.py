"""The C-V2X message service (IoT paper, section 5.1): CAMs, DENMs fanned out by area, latency."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.broker import Subscriber
from tests.examples.conftest import Live, eventually

pytestmark = pytest.mark.timeout(60)

#: about 111 m per 0.001 degree of latitude, 74 m per 0.001 degree of longitude here
VEHICLES = {
    "near-1": (48.1000, 11.5000),  # sends the DENMs
    "near-2": (48.1005, 11.5004),
    "near-3": (48.0995, 11.4996),
    "far": (48.1200, 11.5000),  # 2.2 km away
}
INSIDE = ("near-2", "near-3")


def cam(station: str, lat: float, lon: float) -> bytes:
    return json.dumps({"station": station, "lat": lat, "lon": lon, "speed": 13.9}).encode()


async def test_each_vehicle_in_the_area_gets_its_own_denm_within_budget(live: Live) -> None:
    await live.onboard("cv2x-messages")
    await live.connected("cv2x-messages")
    # each vehicle listens on its own topic; the wildcard sees every alert published
    vehicles = {station: Subscriber(live.broker, f"v2x/alerts/{station}") for station in VEHICLES}
    every = Subscriber(live.broker, "v2x/alerts/#")
    try:
        for _ in range(3):  # periodic CAMs, QoS 0
            for station, (lat, lon) in VEHICLES.items():
                live.broker.publish(f"v2x/cam/{station}", [cam(station, lat, lon)], qos=0)
        # a station id that cannot be a topic level is refused
        live.broker.publish("v2x/cam/x", [cam("a/b", 48.1, 11.5)], qos=0)
        await eventually(lambda: _stations(live, 4))
        sent: list[float] = []
        for n in range(5):
            sent.append(time.time())
            denm = {"station": "near-1", "cause": "accident", "lat": 48.1001, "lon": 11.5001,
                    "radius_m": 200, "sent_at": sent[-1], "n": n}  # fmt: skip
            live.broker.publish("v2x/denm/near-1", [json.dumps(denm).encode()])
        await eventually(lambda: all(len(vehicles[s].messages) == 5 for s in INSIDE))
        await eventually(lambda: _denms(live, 5))  # every alert acknowledged by the broker
        await asyncio.sleep(0.3)  # room for a wrong alert to arrive
        for station in INSIDE:
            alerts = vehicles[station].messages
            for (topic, payload, received), sent_at, n in zip(alerts, sent, range(5), strict=True):
                alert = json.loads(payload)
                assert topic == f"v2x/alerts/{station}" and alert["recipient"] == station
                assert alert["denm"]["n"] == n and 0 < alert["distance_m"] < 200
                assert alert["latency_ms"] >= 0
                # the end-to-end latency, measured here at the receiving vehicle
                assert received - sent_at < 5
        # the sender and the vehicle outside the area get nothing
        assert vehicles["near-1"].messages == [] and vehicles["far"].messages == []
        assert sorted(topic for topic, _, _ in every.messages) == sorted(
            f"v2x/alerts/{s}" for s in INSIDE for _ in range(5)
        )
        figures = await live.get("/fn/cv2x-messages/v2x")
        assert figures["counts"] == {"cam": 12, "denm": 5, "alerts": 10, "invalid": 1}
        assert figures["budget_ms"] == 100 and figures["latency_ms"]["p50"] is not None
        assert 0 <= figures["within_budget"] <= 1
    finally:
        for subscriber in [*vehicles.values(), every]:
            subscriber.close()


async def _stations(live: Live, count: int) -> bool:
    figures = await live.get("/fn/cv2x-messages/v2x")
    return bool(figures["stations"] == count and figures["counts"]["invalid"] == 1)


async def _denms(live: Live, count: int) -> bool:
    figures = await live.get("/fn/cv2x-messages/v2x")
    return bool(figures["counts"]["denm"] == count)
