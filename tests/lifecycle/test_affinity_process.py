"""Flow affinity on a live platform: a UDP-triggered Python function in process sandboxes."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from nfaas.api.app import create_asgi
from nfaas.config import Config
from nfaas.platform import Platform
from tests.helpers import function_doc, package

#: answers the instance it ran in; sleeps first when asked, to make load
HANDLER = """\
import time

def handle(event, context):
    if event.body.startswith(b"sleep"):
        time.sleep(float(event.body.split()[1]))
    return context.instance_id
"""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Flow(asyncio.DatagramProtocol):
    """One UDP flow: a socket of its own (so its own source port) and the replies it got."""

    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.replies.put_nowait(data)

    @classmethod
    async def open(cls, port: int) -> tuple[asyncio.DatagramTransport, Flow]:
        loop = asyncio.get_running_loop()
        return await loop.create_datagram_endpoint(cls, remote_addr=("127.0.0.1", port))

    async def ask(self, transport: asyncio.DatagramTransport, body: bytes) -> str:
        transport.sendto(body)
        return (await asyncio.wait_for(self.replies.get(), 20)).decode()


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    config = Config(data_dir=tmp_path / "data", port=0, node_memory_mb=4096, node_cpu=2,
                    pools_enabled=False, reap_interval_s=0.5)  # fmt: skip
    async with Platform(config) as platform:
        yield platform


async def test_every_datagram_of_a_flow_reaches_one_instance(
    platform: Platform, tmp_path: Path
) -> None:
    port = free_udp_port()
    doc = function_doc("sticky", app="aff", runtime=("python", "3.11"), handler="handler:handle",
                       triggers=[{"type": "udp", "port": port}],
                       scaling={"affinity": "flow", "instance_threshold": 3, "concurrency": 1,
                                "idle_period_s": 120, "queue_size": 200, "queue_timeout_s": 20})  # fmt: skip
    archive = package(tmp_path / "src", "aff", [doc], code={"sticky": {"handler.py": HANDLER}})
    transport = httpx.ASGITransport(app=create_asgi(platform))
    async with httpx.AsyncClient(transport=transport, base_url="http://nfaas", timeout=30) as http:
        r = await http.post("/api/v1/onboard", content=archive, headers={
            "Authorization": f"Bearer {platform.operator_token}", "Content-Type": "application/zip"})  # fmt: skip
        assert r.status_code == 201, r.text
    flows = [await Flow.open(port) for _ in range(12)]
    try:
        # a burst of slow events scales the function out to its threshold
        await asyncio.gather(*(flow.ask(t, b"sleep 0.3") for t, flow in flows))
        assert len(list(platform.manager.instances())) == 3
        # then, the membership settled, each flow sends datagrams, all flows at once
        answers = await asyncio.gather(*(_several(t, flow, 8) for t, flow in flows))
    finally:
        for t, _ in flows:
            t.close()
    assert all(len(set(ids)) == 1 for ids in answers), answers
    assert len({ids[0] for ids in answers}) >= 2  # and the flows spread over instances
    assert len(list(platform.manager.instances())) == 3


async def _several(transport: asyncio.DatagramTransport, flow: Flow, count: int) -> list[str]:
    return [await flow.ask(transport, b"sleep 0.01") for _ in range(count)]
