"""The IoT gateway of the IoT paper, section 4: pre-processing, adaptation, flow aggregation.

Pre-processing: a reading must be a JSON object with a device id, a finite
numeric value, a known unit and a time stamp (``ts``, UNIX seconds; the
arrival time if absent). Anything else is counted under its reason and
dropped: an invalid payload must not fail the function, or a QoS 1 message
would come back for ever.

Adaptation: values are converted to one unit per quantity (temperature in
C, pressure in hPa, energy in kWh).

Flow aggregation: readings are summed per device over windows of
``WINDOW_S`` seconds of event time. A window closes when a reading of a
later window of the same device arrives; the summaries of closed windows wait
in an outbox, which the next MQTT event's result empties (the trigger
publishes it on ``gateway/summaries``). A UDP reading is acknowledged.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

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
    windows: dict[str, Window] = field(default_factory=dict)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def ingest(self, reading: dict[str, Any]) -> None:
        start = math.floor(reading["ts"] / self.window_s) * self.window_s
        open_window = self.windows.get(reading["device"])
        if open_window is not None and start < open_window.start:
            self.count("late")  # its window was published already
            return
        if open_window is not None and (
            start > open_window.start or open_window.unit != reading["unit"]
        ):
            self.outbox.append(open_window.summary(self.window_s))
            open_window = None
        if open_window is None:
            open_window = self.windows[reading["device"]] = Window(
                reading["device"], reading["unit"], start
            )
        open_window.add(reading["value"])
        self.count("accepted")

    def handle(self, event: Any) -> Any:
        if event.trigger not in ("mqtt", "udp"):
            return {"counts": self.counts, "open": len(self.windows), "outbox": len(self.outbox)}
        try:
            self.ingest(validate(event.body, time.time()))
        except Invalid as exc:
            self.count(exc.reason)
            return {"ok": False, "error": exc.reason} if event.trigger == "udp" else self._flush()
        if event.trigger == "udp":
            return {"ok": True}
        return self._flush()

    def _flush(self) -> bytes:
        if not self.outbox:
            return b""
        summaries, self.outbox = self.outbox, []
        return json.dumps(summaries).encode()


_gateway = Gateway(float(os.environ.get("WINDOW_S", "10")))


def handle(event: Any, context: Any) -> Any:
    return _gateway.handle(event)
