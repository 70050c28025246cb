"""A ``Platform`` in this process, with the benchmark package onboarded.

The cold-start benchmarks drive function management directly (event in,
instance retired, pool refilled, next event), which only an in-process
platform allows; the load benchmarks use the real server instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from benchmarks.functions import APP, BenchFunction, write_package_source
from benchmarks.processes import BenchmarkError
from nfaas.config import Config
from nfaas.lifecycle.instances import FunctionVersion
from nfaas.lifecycle.pools import RuntimePool
from nfaas.packages.builder import build_package
from nfaas.platform import Platform

VERSION = "1.0.0"


@contextlib.asynccontextmanager
async def platform_with(functions: list[BenchFunction]) -> AsyncIterator[Platform]:
    """A started platform (default runtime pools on) serving ``functions``; closed at the end."""
    with tempfile.TemporaryDirectory(prefix="nfaas-bench-") as tmp:
        root = Path(tmp)
        config = Config(
            data_dir=root / "data",
            port=0,
            log_level="warning",
            # The benchmarks delete instances themselves; the reaper would only add noise.
            reap_interval_s=3600.0,
            pools_enabled=True,
        )
        data = build_package(write_package_source(root / "src", functions))
        async with Platform(config) as platform:
            await platform.onboarding.onboard(data, "operator", expect="application")
            yield platform


def version_of(platform: Platform, function: str) -> FunctionVersion:
    return platform.catalog.version(APP, function, VERSION)


def pool_of(platform: Platform, function: str) -> RuntimePool:
    pool_id = version_of(platform, function).pool_id
    pool = platform.pools.get(pool_id or "")
    if pool is None:
        raise BenchmarkError(f"{function}: no runtime pool {pool_id!r} is running")
    return pool


def delete_instances(platform: Platform) -> int:
    """Delete every idle instance now, as the reaper would once their idle period passed."""
    far_future = time.monotonic() + 1e9
    return sum(d.reap_idle(far_future) for d in platform.manager.deployments())


async def settle(platform: Platform, pool: RuntimePool, *, timeout_s: float = 10.0) -> None:
    """Wait until no instance is left and ``pool`` is full and idle, then a little more."""
    deadline = time.monotonic() + timeout_s
    while True:
        snap = pool.snapshot()
        busy = any(True for _ in platform.manager.instances())
        if snap.ready >= snap.size and snap.preparing == 0 and not busy:
            break
        if time.monotonic() > deadline:
            raise BenchmarkError(f"pool {pool.id} did not refill within {timeout_s:g} s: {snap}")
        await asyncio.sleep(0.002)
    # Killed workers are reaped and the refill's fork has settled before the next sample.
    await asyncio.sleep(0.02)
