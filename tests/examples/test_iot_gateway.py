"""The IoT gateway (IoT paper, section 4): readings over MQTT and UDP, summaries over MQTT."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import time

import pytest

from tests.broker import Subscriber
from tests.examples.conftest import Live, eventually, free_udp_port

pytestmark = pytest.mark.timeout(60)


def reading(device: str, value: object, unit: str, ts: float) -> bytes:
    return json.dumps({"device": device, "value": value, "unit": unit, "ts": ts}).encode()


async def udp_send(port: int, body: bytes) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        s.connect(("127.0.0.1", port))
        s.send(body)
        return json.loads(await asyncio.wait_for(loop.sock_recv(s, 4096), 10))  # type: ignore[no-any-return]


async def test_readings_are_validated_adapted_and_summarised_per_window(live: Live) -> None:
    port = free_udp_port()
    # minute windows from the next minute on: none can end by the clock during the test
    await live.onboard("iot-gateway", udp_ports={9201: port}, environment={"WINDOW_S": "60"})
    await live.connected("iot-gateway")
    summaries = Subscriber(live.broker, "gateway/summaries")
    try:
        t0 = (math.floor(time.time() / 60) + 1) * 60.0  # a window boundary
        # window 1 of t-1: 20.0 C over MQTT, 68 F (= 20 C) over UDP, 22 C over MQTT
        live.broker.publish("sensors/t-1/reading", [reading("t-1", 20.0, "C", t0 + 1)])
        assert await udp_send(port, reading("t-1", 68, "F", t0 + 2)) == {"ok": True}
        assert await udp_send(port, b"{not json") == {"ok": False, "error": "not_json"}
        live.broker.publish("sensors/t-1/reading", [
            reading("t-1", 22.0, "C", t0 + 3),
            b'{"device": "t-1", "value": "hot", "unit": "C"}',   # refused, acknowledged, not retried
            reading("p-1", 101.3, "kPa", t0 + 4),               # another device: 1013 hPa
            reading("t-1", 30.0, "C", t0 + 61),                 # window 2: closes window 1
            reading("p-1", 1000.0, "hPa", t0 + 62),             # closes p-1's window 1
            reading("t-1", 25.0, "C", t0 + 5),                  # window 1 is closed: late
        ])  # fmt: skip
        await eventually(lambda: len([s for p in summaries.payloads() for s in json.loads(p)]) >= 2)
        published = [s for p in summaries.payloads() for s in json.loads(p)]
        t1 = next(s for s in published if s["device"] == "t-1")
        assert (t1["count"], t1["unit"], t1["start"], t1["end"]) == (3, "C", t0, t0 + 60)
        assert t1["mean"] == pytest.approx(20.666666, rel=1e-5) and (t1["min"], t1["max"]) == (
            20.0,
            22.0,
        )
        p1 = next(s for s in published if s["device"] == "p-1")
        assert (p1["count"], p1["unit"]) == (1, "hPa") and p1["mean"] == pytest.approx(1013.0)
        stats = await eventually(lambda: _counted(live, 9))
        assert stats["counts"] == {"accepted": 6, "not_json": 1, "bad_value": 1, "late": 1}
        assert stats["open"] == 2 and stats["outbox"] == 0
        assert len(published) == 2
    finally:
        summaries.close()


async def test_a_window_closes_on_time_without_a_further_reading(live: Live) -> None:
    port = free_udp_port()
    await live.onboard("iot-gateway", udp_ports={9201: port}, timer_s=0.1,
                       environment={"WINDOW_S": "1", "LATENESS_S": "1"})  # fmt: skip
    await live.connected("iot-gateway")
    summaries = Subscriber(live.broker, "gateway/summaries")
    try:
        await live.get("/fn/iot-gateway/gateway")  # the instance is up
        ts = time.time()
        live.broker.publish("sensors/h-1/reading", [reading("h-1", 40.0, "%", ts),
                                                    reading("h-1", 44.0, "%", ts)])  # fmt: skip
        assert await udp_send(port, reading("h-1", 45.0, "%", ts)) == {"ok": True}
        # no reading follows: the timer closes the window once its end is 1 s behind
        await eventually(lambda: summaries.messages, limit=10)
        (_, payload, received), *_ = summaries.messages
        (summary,) = json.loads(payload)
        start = math.floor(ts)
        assert (summary["device"], summary["count"], summary["start"], summary["end"]) == (
            "h-1", 3, start, start + 1,
        )  # fmt: skip
        assert summary["mean"] == pytest.approx(43.0) and (summary["min"], summary["max"]) == (
            40.0,
            45.0,
        )
        assert received >= start + 1  # not before the window ended
        # a reading of that window now is late: counted, the window is not summarised again
        assert await udp_send(port, reading("h-1", 50.0, "%", ts)) == {"ok": True}
        stats = await live.get("/fn/iot-gateway/gateway")
        assert stats["counts"] == {"accepted": 3, "late": 1}
        assert stats["open"] == 0 and stats["outbox"] == 0
        await asyncio.sleep(0.3)  # a few more ticks
        assert len(summaries.messages) == 1
    finally:
        summaries.close()


async def _counted(live: Live, count: int) -> dict[str, object] | None:
    stats = await live.get("/fn/iot-gateway/gateway")
    return stats if sum(stats["counts"].values()) >= count else None
