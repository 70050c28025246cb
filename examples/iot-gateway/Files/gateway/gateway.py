"""The IoT gateway of the IoT paper, section 4: pre-processing, adaptation, flow aggregation.

Pre-processing: a reading must be a JSON object with a device id, a finite
numeric value, a known unit and a time stamp (``ts``, UNIX seconds; the
arrival time if absent). Anything else is counted under its reason and
dropped: an invalid payload must not fail the function, or a QoS 1 message
would come back for ever.

Adaptation: values are converted to one unit per quantity (temperature in
C, pressure in hPa, energy in kWh).

Flow aggregation: readings are summed per device over windows of
``WINDOW_S`` seconds of event time, aligned on multiples of ``WINDOW_S``. A
window closes on time: once the clock passes its end by ``LATENESS_S`` (the
allowance for readings still in transit), at the next tick of the function's
timer trigger, whether or not any reading came since. It closes earlier when a
reading of a later window of the same device arrives. A reading whose window
has closed is late: counted, not aggregated, so that no window is summarised
twice. A UDP reading is acknowledged.

Each closed window's summary is published on ``SUMMARY_TOPIC`` (a JSON list
of the summaries closed together) as soon as it closes, through the
instance's own MQTT client (``mqtt_publisher``): a timer tick's result is not
published, and a trigger's ``publish`` would only carry an MQTT event's. A
summary the broker did not acknowledge stays in the outbox and goes with the
next tick: the reading that closed its window is in it already, so failing
that reading's invocation (and having it redelivered) would count it twice.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from mqtt_publisher import MqttPublisher, PublishFailed

DEVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
#: unit -> (canonical unit, conversion)
UNITS: dict[str, tuple[str, Any]] = {
    "C": ("C", lambda v: v),
    "F": ("C", lambda v: (v - 32) * 5 / 9),
    "K": ("C", lambda v: v - 273.15),
    "hPa": ("hPa", lambda v: v),
    "kPa": ("hPa", lambda v: v * 10),
    "Pa": ("hPa", lambda v: v / 100),
    "kWh": ("kWh", lambda v: v),
    "Wh": ("kWh", lambda v: v / 1000),
    "%": ("%", lambda v: v),
}


class Invalid(ValueError):
    """A reading refused; ``reason`` is the counter it goes to."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def validate(body: bytes, now: float) -> dict[str, Any]:
    try:
        reading = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Invalid("not_json") from None
    if not isinstance(reading, dict):
        raise Invalid("not_an_object")
    device, value, unit = reading.get("device"), reading.get("value"), reading.get("unit")
    if not isinstance(device, str) or not DEVICE.match(device):
        raise Invalid("bad_device")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Invalid("bad_value")
    if unit not in UNITS:
        raise Invalid("unknown_unit")
    ts = reading.get("ts", now)
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        raise Invalid("bad_ts")
    canonical, convert = UNITS[unit]
    return {"device": device, "value": float(convert(value)), "unit": canonical, "ts": float(ts)}


@dataclass
class Window:
    device: str
    unit: str
    start: float
    count: int = 0
    total: float = 0.0
    low: float = math.inf
    high: float = -math.inf

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.low, self.high = min(self.low, value), max(self.high, value)

    def summary(self, length: float) -> dict[str, Any]:
        return {"device": self.device, "unit": self.unit, "start": self.start, "end": self.start + length,
                "count": self.count, "mean": self.total / self.count, "min": self.low, "max": self.high}  # fmt: skip


@dataclass
class Gateway:
    window_s: float
    lateness_s: float
    topic: str
    publisher: MqttPublisher
    windows: dict[str, Window] = field(default_factory=dict)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def ingest(self, reading: dict[str, Any], now: float) -> None:
        start = math.floor(reading["ts"] / self.window_s) * self.window_s
        open_window = self.windows.get(reading["device"])
        if start + self.window_s + self.lateness_s <= now or (
            open_window is not None and start < open_window.start
        ):
            self.count("late")  # its window was closed and published already
            return
        if open_window is not None and (
            start > open_window.start or open_window.unit != reading["unit"]
        ):
            self.close(open_window)
            open_window = None
        if open_window is None:
            open_window = self.windows[reading["device"]] = Window(
                reading["device"], reading["unit"], start
            )
        open_window.add(reading["value"])
        self.count("accepted")

    def expire(self, now: float) -> None:
        """Close every window whose end passed ``LATENESS_S`` ago."""
        for window in list(self.windows.values()):
            if window.start + self.window_s + self.lateness_s <= now:
                self.close(window)

    def close(self, window: Window) -> None:
        del self.windows[window.device]
        self.outbox.append(window.summary(self.window_s))

    def handle(self, event: Any) -> Any:
        now = time.time()
        if event.trigger == "timer":
            self.expire(now)
            self._flush()
            return None
        if event.trigger not in ("mqtt", "udp"):
            return {"counts": self.counts, "open": len(self.windows), "outbox": len(self.outbox)}
        try:
            self.ingest(validate(event.body, now), now)
        except Invalid as exc:
            self.count(exc.reason)
            return {"ok": False, "error": exc.reason} if event.trigger == "udp" else None
        self._flush()
        return {"ok": True} if event.trigger == "udp" else None

    def _flush(self) -> None:
        if not self.outbox:
            return
        try:
            self.publisher.publish([(self.topic, json.dumps(self.outbox).encode())])
        except (OSError, PublishFailed):
            self.count("publish_failed")  # kept for the next tick
            return
        self.outbox = []


_gateway = Gateway(
    window_s=float(os.environ.get("WINDOW_S", "10")),
    lateness_s=float(os.environ.get("LATENESS_S", "2")),
    topic=os.environ.get("SUMMARY_TOPIC", "gateway/summaries"),
    publisher=MqttPublisher(os.environ.get("MQTT_BROKER", "mqtt://127.0.0.1:1883")),
)


def handle(event: Any, context: Any) -> Any:
    return _gateway.handle(event)
