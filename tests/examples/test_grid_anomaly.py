"""The smart grid chain (IoT paper, section 3.4): an anomaly starts surveillance through chaining."""

from __future__ import annotations

import json

import pytest

from tests.examples.conftest import Live, eventually

pytestmark = pytest.mark.timeout(60)


def measurement(sensor: str, voltage: float) -> bytes:
    return json.dumps(
        {"sensor": sensor, "voltage": voltage, "location": f"substation {sensor}"}
    ).encode()


async def test_an_anomaly_starts_video_surveillance(live: Live) -> None:
    await live.onboard("grid-anomaly")
    await live.connected("grid-anomaly")
    normal = [measurement("s-7", 230.0 + (i % 5) * 0.2) for i in range(30)]
    live.broker.publish("grid/s-7/measurement", [*normal, b"garbage"])
    stats = await eventually(lambda: _measured(live, 30))
    assert stats["counts"] == {"measurements": 30, "anomalies": 0, "invalid": 1}
    assert (await live.get("/fn/grid-anomaly/surveillance"))["sessions"] == []
    live.broker.publish(
        "grid/s-7/measurement", [measurement("s-7", 236.5)]
    )  # in band, far from the mean
    sessions = await eventually(lambda: _sessions(live))
    session = sessions[0]
    assert session["camera"] == "substation s-7" and len(session["frames"]) == 5
    assert session["anomaly"]["reason"].startswith("z=") and session["anomaly"]["voltage"] == 236.5
    assert 0 < session["latency_ms"] < 10_000
    chains = live.platform.router.chains
    assert chains.hops == {("grid-anomaly", "detect", "surveillance"): 1}
    await eventually(lambda: chains.ended.get(("grid-anomaly", "detect"), [0])[0] == 1)


async def _measured(live: Live, count: int) -> dict[str, object] | None:
    stats = await live.get("/fn/grid-anomaly/detect")
    return (
        stats if stats["counts"]["measurements"] + stats["counts"]["invalid"] >= count + 1 else None
    )


async def _sessions(live: Live) -> list[dict[str, object]]:
    return (await live.get("/fn/grid-anomaly/surveillance"))["sessions"]  # type: ignore[no-any-return]
