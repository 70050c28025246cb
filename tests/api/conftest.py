from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from nfaas.api.app import create_asgi
from nfaas.config import Config
from nfaas.platform import Platform
from nfaas.sandboxes.base import Event
from nfaas.sandboxes.mock import MockBackend


async def slow(event: Event) -> bytes:
    await asyncio.sleep(float(event.body or b"0.2"))
    return b"done"


def boom(event: Event) -> bytes:
    raise ValueError("bad reading")


@dataclass
class Api:
    platform: Platform
    http: httpx.AsyncClient
    operator: dict[str, str]
    backend: MockBackend

    def tenant(self, name: str) -> dict[str, str]:
        token = self.platform.auth.issue(name)
        return {"Authorization": f"Bearer {token}"}


def make_config(tmp: Path, **kw: object) -> Config:
    return Config(
        data_dir=tmp / "data",
        port=0,
        pools_enabled=False,
        reap_interval_s=0.05,
        node_memory_mb=4096,
        node_cpu=2,
        **kw,
    )  # type: ignore[arg-type]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    backend = MockBackend(
        {"echo": lambda e: e.body, "upper": lambda e: e.body.upper(), "slow": slow, "boom": boom}
    )
    platform = Platform(make_config(tmp_path), backends={"mock": backend})
    platform.runtimes.register_builtins()
    platform.runtimes.create("mock", "1", "mock", "in-process test backend")
    async with platform:
        transport = httpx.ASGITransport(app=create_asgi(platform))
        async with httpx.AsyncClient(transport=transport, base_url="http://nfaas") as http:
            operator = {"Authorization": f"Bearer {platform.operator_token}"}
            yield Api(platform, http, operator, backend)
