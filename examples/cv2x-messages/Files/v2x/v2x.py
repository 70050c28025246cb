"""The C-V2X message service of the IoT paper, section 5.1.

CAM (cooperative awareness message): sent periodically by every vehicle, with
its position and speed; the service keeps each station's latest, forgetting
stations silent for ``CAM_TTL_S``.

DENM (decentralised environmental notification message): sent on an event
(an accident, ice), with the event's position and the radius of its relevance
area. It fans out to the vehicles in that area: each station whose last CAM
puts it within the radius (the sender excepted) gets its own alert on
``v2x/alerts/<station>``, the topic that vehicle subscribes to, and a vehicle
outside the area gets nothing. An alert carries the DENM, the recipient's
distance from the event and the service's own latency from the DENM's
generation (``sent_at``, UNIX time at the sender) to the alerts leaving the
function. Section 5.2.2 budgets 100-110 ms end to end; the instance keeps its
latencies and tells the share within ``BUDGET_MS``.

The alerts go out through the instance's own MQTT client (``mqtt_publisher``):
a trigger's ``publish`` names one topic, not one per recipient. The function
returns only once the broker has acknowledged every alert, so a DENM (QoS 1)
whose alerts could not all be published fails and is redelivered: a vehicle
may get an alert twice, never lose it.

A station id becomes a topic level, so it must be a plain name (letters,
digits, ``.``, ``_``, ``:``, ``-``): no ``/``, ``+`` or ``#``.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from typing import Any

from mqtt_publisher import MqttPublisher

EARTH_RADIUS_M = 6_371_000.0
STATION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
ALERTS = "v2x/alerts/"


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


def _message(body: bytes, fields: tuple[str, ...]) -> dict[str, Any] | None:
    try:
        m = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(m, dict) or not isinstance(m.get("station"), str):
        return None
    if not STATION.match(m["station"]):
        return None
    for name in fields:
        value = m.get(name)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            return None
    return m


class Service:
    def __init__(self, env: dict[str, str], publisher: MqttPublisher) -> None:
        self.ttl = float(env.get("CAM_TTL_S", "2"))
        self.budget_ms = float(env.get("BUDGET_MS", "100"))
        self.publisher = publisher
        self.stations: dict[str, dict[str, Any]] = {}
        self.latencies_ms: list[float] = []
        self.counts = {"cam": 0, "denm": 0, "alerts": 0, "invalid": 0}

    def cam(self, m: dict[str, Any]) -> None:
        self.counts["cam"] += 1
        self.stations[m["station"]] = {
            "lat": m["lat"],
            "lon": m["lon"],
            "speed": m["speed"],
            "seen": time.time(),
        }

    def denm(self, m: dict[str, Any]) -> None:
        now = time.time()
        self.stations = {s: v for s, v in self.stations.items() if now - v["seen"] <= self.ttl}
        distances = {
            station: distance_m(m["lat"], m["lon"], v["lat"], v["lon"])
            for station, v in self.stations.items() if station != m["station"]
        }  # fmt: skip
        recipients = sorted(s for s, d in distances.items() if d <= m["radius_m"])
        latency_ms = (time.time() - m["sent_at"]) * 1000
        self.publisher.publish([
            (ALERTS + station, json.dumps({
                "denm": m, "recipient": station, "distance_m": round(distances[station], 1),
                "latency_ms": latency_ms, "within_budget": latency_ms <= self.budget_ms,
            }).encode())
            for station in recipients
        ])  # fmt: skip
        # counted once the broker has every alert: a DENM that failed comes back
        self.counts["denm"] += 1
        self.counts["alerts"] += len(recipients)
        self.latencies_ms.append(latency_ms)

    def figures(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)

        def pick(q: float) -> float | None:
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None

        within = sum(1 for x in ordered if x <= self.budget_ms)
        return {"counts": self.counts, "stations": len(self.stations), "budget_ms": self.budget_ms,
                "latency_ms": {"p50": pick(0.5), "p99": pick(0.99), "max": ordered[-1] if ordered else None},
                "within_budget": within / len(ordered) if ordered else None}  # fmt: skip

    def handle(self, event: Any) -> Any:
        if event.trigger != "mqtt":
            return self.figures()
        kind = str(event.meta.get("topic", "")).split("/")[1:2]
        if kind == ["cam"]:
            m = _message(event.body, ("lat", "lon", "speed"))
            if m is not None:
                self.cam(m)
                return b""
        elif kind == ["denm"]:
            m = _message(event.body, ("lat", "lon", "radius_m", "sent_at"))
            if m is not None:
                self.denm(m)
                return b""
        self.counts["invalid"] += 1
        return b""


_service = Service(
    dict(os.environ), MqttPublisher(os.environ.get("MQTT_BROKER", "mqtt://127.0.0.1:1883"))
)


def handle(event: Any, context: Any) -> Any:
    return _service.handle(event)
