"""Status of the instance that answers.

Module-level state lives as long as the instance (EVE025 use case #4 deletes
an instance after its idle period), so each instance counts its own timer
ticks and invocations; two answers may come from two different instances.
"""

from __future__ import annotations

import time
from typing import Any

_STARTED = time.monotonic()
_ticks = 0
_invocations = 0


def handle(event: Any, context: Any) -> dict[str, Any] | None:
    global _ticks, _invocations
    _invocations += 1
    if event.trigger == "timer":
        _ticks += 1
        # nobody reads a timer tick's answer
        return None
    return {
        "app": context.app,
        "function": context.function,
        "version": context.version,
        "instance": context.instance_id,
        "uptime_s": round(time.monotonic() - _STARTED, 3),
        "ticks": _ticks,
        "invocations": _invocations,
    }
