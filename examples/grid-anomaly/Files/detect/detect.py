"""Anomaly detection on grid sensor streams (IoT paper, section 3.4).

Per sensor, an exponentially weighted mean and variance of the voltage. A
measurement is anomalous when it leaves the band [VOLTAGE_MIN, VOLTAGE_MAX]
(EN 50160: 230 V +-10 %) or, once WARM_UP measurements were seen, lies more
than Z_THRESHOLD standard deviations from the mean. The anomaly is the
function's result, and the descriptor's chain hands it to ``surveillance``;
a normal measurement answers nothing, so the chain stops there. An invalid
payload is counted and dropped, never raised (a QoS 1 message would return).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from typing import Any

ALPHA = 0.1


@dataclass
class SensorStats:
    mean: float = 0.0
    var: float = 0.0
    seen: int = 0

    def update(self, x: float) -> None:
        if self.seen == 0:
            self.mean = x
        else:
            delta = x - self.mean
            self.mean += ALPHA * delta
            self.var = (1 - ALPHA) * (self.var + ALPHA * delta * delta)
        self.seen += 1


class Detector:
    def __init__(self, env: dict[str, str]) -> None:
        self.low = float(env.get("VOLTAGE_MIN", "207"))
        self.high = float(env.get("VOLTAGE_MAX", "253"))
        self.z = float(env.get("Z_THRESHOLD", "6"))
        self.warm_up = int(env.get("WARM_UP", "10"))
        self.sensors: dict[str, SensorStats] = {}
        self.counts = {"measurements": 0, "anomalies": 0, "invalid": 0}

    def check(self, m: dict[str, Any]) -> dict[str, Any] | None:
        stats = self.sensors.setdefault(m["sensor"], SensorStats())
        v = m["voltage"]
        reason = None
        if not self.low <= v <= self.high:
            reason = "out_of_band"
        elif stats.seen >= self.warm_up and stats.var > 0:
            z = abs(v - stats.mean) / math.sqrt(stats.var)
            if z > self.z:
                reason = f"z={z:.1f}"
        if reason is None:
            stats.update(v)  # an anomaly does not shift the baseline
            return None
        return {"sensor": m["sensor"], "voltage": v, "mean": stats.mean, "reason": reason,
                "ts": m.get("ts", time.time()), "location": m.get("location", m["sensor"])}  # fmt: skip

    def handle(self, event: Any) -> Any:
        if event.trigger != "mqtt":
            return {"counts": self.counts, "sensors": len(self.sensors)}
        try:
            m = json.loads(event.body)
            if not isinstance(m, dict) or not isinstance(m.get("sensor"), str):
                raise ValueError("no sensor")
            m["voltage"] = float(m["voltage"])
            if not math.isfinite(m["voltage"]):
                raise ValueError("voltage")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            self.counts["invalid"] += 1
            return b""
        self.counts["measurements"] += 1
        anomaly = self.check(m)
        if anomaly is None:
            return b""
        self.counts["anomalies"] += 1
        return anomaly


_detector = Detector(dict(os.environ))


def handle(event: Any, context: Any) -> Any:
    return _detector.handle(event)
