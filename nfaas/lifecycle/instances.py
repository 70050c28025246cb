"""A deployable function version and the instances that serve it.

``FunctionVersion`` is what the catalog hands the lifecycle; a
``FunctionInstance`` is one loaded sandbox serving it, with the slots
(``scaling.concurrency``) its events take. ``deployment.py`` creates and
deletes instances; ``waiters.py`` hands their slots to waiting events.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

from nfaas.lifecycle.infra import Reservation
from nfaas.packages.descriptors import FunctionDescriptor
from nfaas.sandboxes.base import FunctionCode, Sandbox


@dataclass(frozen=True)
class FunctionVersion:
    """A deployable function version: its descriptor, code on disk and where it runs."""

    tenant: str
    descriptor: FunctionDescriptor
    code: FunctionCode
    backend: str
    pool_id: str | None

    @property
    def app(self) -> str:
        return self.code.app

    @property
    def name(self) -> str:
        return self.code.name

    @property
    def version(self) -> str:
        return self.code.version

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.code.app, self.code.name, self.code.version)


class InstanceState(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    DELETED = "deleted"


@dataclass(eq=False)
class FunctionInstance:
    """One loaded sandbox serving one function version."""

    id: str
    version: FunctionVersion
    sandbox: Sandbox
    reservation: Reservation
    from_pool: bool
    init_seconds: float
    created_at: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)
    in_flight: int = 0
    served: int = 0
    state: InstanceState = InstanceState.READY
    #: created ahead of any event, at the start of a keep-alive policy's window
    prewarmed: bool = False

    @property
    def free_slots(self) -> int:
        if self.state is not InstanceState.READY or not self.sandbox.usable:
            return 0
        return self.version.descriptor.scaling.concurrency - self.in_flight
