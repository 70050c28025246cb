"""Ingest one sensor reading and acknowledge it.

A reading arrives as JSON (``{"device": "t-1", "value": 21.5, "unit": "C"}``)
or as ``key=value`` pairs (``device=t-1 value=21.5 unit=C``, separated by
spaces, commas, semicolons or ``&``), over HTTP (POST /telemetry or
/fn/iot-telemetry/ingest) or as a UDP datagram on port 9001. The answer is an
acknowledgement in JSON; an invalid reading gets ``{"ok": false, "error": ...}``
so that a UDP sender learns what was wrong too.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from typing import Any

DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
UNIT = re.compile(r"^[A-Za-z%°/0-9.-]{1,16}$")
PAIR_SEPARATORS = re.compile(r"[\s,;&]+")
MAX_READING_BYTES = int(os.environ.get("MAX_READING_BYTES", "4096"))


class InvalidReading(ValueError):
    """A reading this function refuses; the message says why."""


def parse_reading(body: bytes) -> dict[str, Any]:
    """The reading's fields, from JSON or key=value text."""
    if len(body) > MAX_READING_BYTES:
        raise InvalidReading(f"reading is {len(body)} bytes, over {MAX_READING_BYTES}")
    try:
        text = body.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise InvalidReading("reading is not UTF-8 text") from None
    if not text:
        raise InvalidReading("empty reading")
    if text[0] in "{[":
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidReading(f"invalid JSON: {exc.msg}") from None
        if not isinstance(fields, dict):
            raise InvalidReading("a JSON reading is an object")
        return fields
    fields = {}
    for pair in PAIR_SEPARATORS.split(text):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidReading(f"expected key=value, got {pair!r}")
        fields[key.strip()] = value.strip()
    return fields


def validate_reading(fields: dict[str, Any]) -> dict[str, Any]:
    """A clean reading: device id, finite numeric value, optional unit and timestamp."""
    device = fields.get("device", fields.get("device_id"))
    if not isinstance(device, str) or not DEVICE_ID.match(device):
        raise InvalidReading(
            "'device' must be 1-64 characters of letters, digits, '.', '_', ':' or '-'"
        )
    value = fields.get("value")
    if isinstance(value, bool):
        raise InvalidReading("'value' must be a number")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise InvalidReading(f"'value' must be a number, not {value!r}") from None
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidReading("'value' must be a finite number")
    reading: dict[str, Any] = {"device": device, "value": value}
    unit = fields.get("unit")
    if unit is not None:
        if not isinstance(unit, str) or not UNIT.match(unit):
            raise InvalidReading("'unit' must be a short unit symbol such as C, %, hPa")
        reading["unit"] = unit
    ts = fields.get("ts")
    if ts is not None:
        try:
            reading["ts"] = float(ts)
        except (TypeError, ValueError):
            raise InvalidReading("'ts' must be a UNIX time in seconds") from None
    return reading


def handle(event: Any, context: Any) -> dict[str, Any]:
    try:
        reading = validate_reading(parse_reading(event.body))
    except InvalidReading as exc:
        return {"ok": False, "error": str(exc)}
    return {
        "ok": True,
        "reading": reading,
        "received_at": time.time(),
        "via": event.trigger,
        "function": context.function,
        "version": context.version,
        "instance": context.instance_id,
    }
