"""Video surveillance started by an anomaly (IoT paper, section 3.4), with a stub camera.

The camera is a stand-in: it "captures" ``FRAMES`` frames (synthetic bytes
with a time stamp and a digest) of the anomaly's location. What is real is
the chain: this function runs because ``detect`` answered an anomaly, and it
records how long the chain took to get here (``meta.chain.started`` is the
arrival of the measurement, on the host's monotonic clock).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any


class StubCamera:
    def __init__(self, location: str) -> None:
        self.location = location

    def frames(self, count: int) -> list[dict[str, Any]]:
        out = []
        for n in range(count):
            data = f"{self.location}:{n}:{time.time()}".encode() * 64
            out.append(
                {
                    "n": n,
                    "at": time.time(),
                    "bytes": len(data),
                    "sha256": hashlib.sha256(data).hexdigest()[:16],
                }
            )
        return out


_sessions: list[dict[str, Any]] = []


def handle(event: Any, context: Any) -> Any:
    if event.trigger != "chain":
        return {"sessions": _sessions}
    anomaly = json.loads(event.body)
    chain = event.meta.get("chain", {})
    camera = StubCamera(str(anomaly.get("location", "unknown")))
    session = {
        "camera": camera.location,
        "anomaly": anomaly,
        "chain": chain.get("id"),
        "latency_ms": (time.monotonic() - float(chain.get("started", time.monotonic()))) * 1000,
        "frames": camera.frames(int(os.environ.get("FRAMES", "5"))),
    }
    _sessions.append(session)
    return {"camera": camera.location, "frames": len(session["frames"])}
