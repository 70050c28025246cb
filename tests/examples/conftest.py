"""The IoT example applications on a live platform (process sandbox) and a real broker."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from nfaas.api.app import create_asgi
from nfaas.config import Config
from nfaas.packages.builder import build_package
from nfaas.platform import Platform
from nfaas.triggers.mqtt import MqttSource
from tests.broker import Broker, running_broker

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@dataclass
class Live:
    platform: Platform
    http: httpx.AsyncClient
    broker: Broker
    tmp: Path

    async def onboard(
        self,
        example: str,
        *,
        udp_ports: dict[int, int] | None = None,
        environment: dict[str, str] | None = None,
        timer_s: float | None = None,
    ) -> None:
        """Onboard ``examples/<example>`` on our broker (its MQTT triggers, and any variable
        naming a broker), UDP ports moved, ``environment`` set and timers at ``timer_s``."""
        folder = self.tmp / example
        shutil.copytree(EXAMPLES / example, folder, ignore=shutil.ignore_patterns("__pycache__"))
        broker = f"mqtt://127.0.0.1:{self.broker.port}"
        for path in (folder / "Definitions").glob("*.yaml"):
            doc = yaml.safe_load(path.read_text())
            if doc["kind"] != "ServerlessFunction":
                continue
            for trigger in doc.get("triggers", []):
                if trigger["type"] == "mqtt":
                    trigger["broker"] = broker
                if trigger["type"] == "udp":
                    trigger["port"] = (udp_ports or {})[trigger["port"]]
                if trigger["type"] == "timer" and timer_s is not None:
                    trigger["interval_s"] = timer_s
            env = doc.get("environment", {})
            env.update({k: broker for k, v in env.items() if str(v).startswith("mqtt://")})
            doc["environment"] = env | (environment or {})
            path.write_text(yaml.safe_dump(doc))
        token = {"Authorization": f"Bearer {self.platform.operator_token}"}
        r = await self.http.post("/api/v1/onboard", content=build_package(folder),
                                 headers=token | {"Content-Type": "application/zip"})  # fmt: skip
        assert r.status_code == 201, r.text

    async def connected(self, app: str) -> None:
        """Wait until every MQTT trigger of ``app`` is connected and subscribed."""
        triggers = self.platform.triggers
        for binding in triggers.active():
            source = triggers.source(binding.key)
            if binding.app == app and isinstance(source, MqttSource):
                await asyncio.wait_for(source.connected.wait(), 10)
        await asyncio.sleep(0.3)  # the SUBACK

    async def get(self, path: str) -> Any:
        r = await self.http.get(path)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    (tmp_path / "broker").mkdir()
    yield from running_broker(tmp_path / "broker")


@pytest.fixture
async def live(tmp_path: Path, broker: Broker) -> AsyncIterator[Live]:
    config = Config(data_dir=tmp_path / "data", port=0, node_memory_mb=4096, node_cpu=2,
                    pools_enabled=False, reap_interval_s=0.5)  # fmt: skip
    async with Platform(config) as platform:
        transport = httpx.ASGITransport(app=create_asgi(platform))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://nfaas", timeout=30
        ) as http:
            yield Live(platform, http, broker, tmp_path)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def eventually(check: Callable[[], Any], limit: float = 10.0) -> Any:
    """Poll an async or plain check until it returns something true."""
    deadline = asyncio.get_running_loop().time() + limit
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)
