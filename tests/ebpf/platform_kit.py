"""A real platform for the eBPF API tests: real backends, the API over ASGI, packages from examples."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from nfaas.api.app import create_asgi
from nfaas.packages.builder import build_package
from nfaas.platform import Platform
from tests.api.conftest import make_config
from tests.ebpf.conftest import EXAMPLES


@dataclass
class EbpfApi:
    platform: Platform
    http: httpx.AsyncClient
    operator: dict[str, str]

    async def onboard(self, source: Path, headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.http.post(
            "/api/v1/onboard",
            content=build_package(source),
            headers=(headers or self.operator) | {"Content-Type": "application/zip"},
        )

    async def instantiate(self, function: str, **body: Any) -> httpx.Response:
        return await self.http.post(
            "/api/v1/ebpf/instances", json={"function": function, **body}, headers=self.operator
        )

    async def put_entry(self, instance: str, map_name: str, key: Any, value: Any) -> httpx.Response:
        return await self.http.put(
            f"/api/v1/ebpf/instances/{instance}/maps/{map_name}/entries",
            json={"key": key, "value": value},
            headers=self.operator,
        )

    async def delete_entry(self, instance: str, map_name: str, key: Any) -> httpx.Response:
        return await self.http.request(
            "DELETE",
            f"/api/v1/ebpf/instances/{instance}/maps/{map_name}/entries",
            json={"key": key},
            headers=self.operator,
        )

    async def entries(self, instance: str, map_name: str) -> list[dict[str, Any]]:
        r = await self.http.get(
            f"/api/v1/ebpf/instances/{instance}/maps/{map_name}", headers=self.operator
        )
        assert r.status_code == 200, r.text
        entries: list[dict[str, Any]] = r.json()["entries"]
        return entries

    async def counters(self, instance: str) -> dict[str, Any]:
        r = await self.http.get(
            f"/api/v1/ebpf/instances/{instance}/counters", headers=self.operator
        )
        assert r.status_code == 200, r.text
        counters: dict[str, Any] = r.json()
        return counters


def example_copy(tmp: Path, name: str) -> Path:
    """An example's source folder, copied so that a test may change it."""
    dest = tmp / name
    shutil.copytree(EXAMPLES / name, dest)
    return dest


@asynccontextmanager
async def running_platform(tmp: Path, **config: Any) -> AsyncIterator[EbpfApi]:
    platform = Platform(make_config(tmp, **config))
    async with platform:
        transport = httpx.ASGITransport(app=create_asgi(platform))
        async with httpx.AsyncClient(transport=transport, base_url="http://nfaas") as http:
            operator = {"Authorization": f"Bearer {platform.operator_token}"}
            yield EbpfApi(platform, http, operator)
