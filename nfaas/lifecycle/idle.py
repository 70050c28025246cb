"""Which idle instances to delete, and how many to pre-warm (use case #4; EVE025 7.2.3).

Without a keep-alive policy an instance is deleted once it has been idle for
the function's ``idle_period_s``. With one (``nfaas.keepalive``), the
policy's window after the newest event decides: outside it every idle
instance is deleted (before it, the policy has chosen to unload and load
again later: the pre-warm of "Serverless in the Wild"); inside it the
``ready`` most recently used idle instances are held, and any others fall
back to the idle period. At the window's start, when the policy asked for a
pre-warm, instances are created up to ``ready``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nfaas.keepalive.live import KeepWindow
    from nfaas.lifecycle.instances import FunctionInstance


def idle_to_delete(
    idle: Sequence[FunctionInstance],
    now: float,
    idle_period_s: float,
    window: KeepWindow | None,
) -> list[tuple[FunctionInstance, str]]:
    """The usable idle instances to delete now, each with the reason recorded."""
    if window is None:
        return [(i, "idle") for i in idle if now - i.last_used >= idle_period_s]
    if not window.holds(now):
        return [(i, "keepalive") for i in idle]
    newest_first = sorted(idle, key=lambda i: i.last_used, reverse=True)
    extra = newest_first[max(window.ready, 0) :]
    return [(i, "idle") for i in extra if now - i.last_used >= idle_period_s]


def prewarm_count(
    window: KeepWindow | None, now: float, live: int, starting: int, threshold: int
) -> int:
    """How many instances to start now so that ``ready`` are loaded in the window."""
    if window is None or not window.prewarm or not window.holds(now):
        return 0
    return max(0, min(window.ready, threshold) - live - starting)
