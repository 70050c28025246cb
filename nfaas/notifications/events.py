"""Lifecycle events: what happened to instances, packages and version policies.

One ``EventLog`` per platform: the components that change something emit an
event; the log keeps the recent ones (the dashboard shows them) and hands each
to its listeners (the subscriptions, which turn them into notifications).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

log = logging.getLogger(__name__)

NotificationType = Literal[
    "FunctionMetrics",
    "InstanceCreated",
    "InstanceDeleted",
    "PackageOnboarded",
    "PackageOnboardingFailed",
    "VersionPolicyChanged",
    "VersionRollback",
]
NOTIFICATION_TYPES: tuple[str, ...] = get_args(NotificationType)


@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    type: NotificationType
    #: wall-clock time (seconds since the epoch)
    at: float
    #: whose it is: a tenant's subscriptions hear only their own events
    tenant: str
    app: str | None = None
    function: str | None = None
    version: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "notificationType": self.type,
            "timeStamp": self.at,
            "app": self.app,
            "function": self.function,
            "version": self.version,
            "detail": self.detail,
        }


Listener = Callable[[LifecycleEvent], None]


class EventLog:
    def __init__(self, keep: int = 200, clock: Callable[[], float] = time.time) -> None:
        self._recent: deque[LifecycleEvent] = deque(maxlen=keep)
        self._listeners: list[Listener] = []
        self._clock = clock

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def emit(
        self,
        type: NotificationType,
        tenant: str,
        *,
        app: str | None = None,
        function: str | None = None,
        version: str | None = None,
        **detail: Any,
    ) -> LifecycleEvent:
        event = LifecycleEvent(type, self._clock(), tenant, app, function, version, detail)
        self._recent.append(event)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # a listener's bug must not undo what already happened
                log.exception("lifecycle event listener failed on %s", type)
        return event

    def recent(self, tenant: str | None = None, limit: int = 50) -> list[LifecycleEvent]:
        """The newest first; ``tenant`` None is the operator, who sees every event."""
        out: list[LifecycleEvent] = []
        for event in reversed(self._recent):
            if tenant is None or event.tenant == tenant:
                out.append(event)
                if len(out) >= limit:
                    break
        return out
