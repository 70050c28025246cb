from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nfaas.lifecycle.infra import NodeCapacity
from nfaas.lifecycle.instances import FunctionVersion
from nfaas.lifecycle.manager import FunctionManager
from nfaas.lifecycle.pools import RuntimePool
from nfaas.packages.descriptors import FunctionDescriptor
from nfaas.sandboxes.base import Event, FunctionCode, Limits
from nfaas.sandboxes.mock import MockBackend
from nfaas.telemetry.metrics import Telemetry


async def slow_echo(event: Event) -> bytes:
    await asyncio.sleep(float(event.meta.get("sleep", 0.05)))
    return event.body


def make_version(
    handler: str = "echo", name: str = "fn", version: str = "1", **scaling: Any
) -> FunctionVersion:
    desc = FunctionDescriptor.model_validate(
        {
            "name": name,
            "version": version,
            "runtime": {"name": "mock", "version": "1"},
            "handler": handler,
            "code": {"path": "Files/x"},
            "resources": {"memory_mb": 64, "cpu": 0.1, "timeout_s": 1},
            "scaling": {"idle_period_s": 60, "queue_timeout_s": 1, **scaling},
        }
    )
    code = FunctionCode(
        "app", name, version, handler, Path(os.devnull), Limits(memory_mb=64, timeout_s=1)
    )
    return FunctionVersion("tenant", desc, code, "mock", "mock-pool")


@dataclass
class Rig:
    backend: MockBackend
    capacity: NodeCapacity
    telemetry: Telemetry
    manager: FunctionManager
    pool: RuntimePool
    version: Callable[..., FunctionVersion]


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    backend = MockBackend({"echo": lambda e: e.body, "slow": slow_echo})
    capacity = NodeCapacity(memory_mb=1024, cpu=2)
    telemetry = Telemetry()
    pool = RuntimePool("mock-pool", "mock:1", backend, capacity, size=0, sandbox_memory_mb=8)
    pool.start()
    manager = FunctionManager(
        capacity,
        telemetry,
        lambda name: backend,
        lambda v: pool if v.pool_id else None,
        reap_interval_s=0.05,
    )
    manager.start()
    yield Rig(backend, capacity, telemetry, manager, pool, make_version)
    await manager.aclose(grace_s=0.5)
    await pool.aclose()
