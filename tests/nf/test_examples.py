"""The example NFs on traffic: offline from pcap files, and onboarded on a live platform.

On the platform the NFs run as ordinary Python functions in the process
sandbox, fed by their UDP port triggers over real sockets on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import httpx
import numpy as np
import pytest

from nfaas.api.app import create_asgi
from nfaas.config import Config
from nfaas.nf import PacketBatch
from nfaas.nf.io.datagram import join_tunnel, split_tunnel
from nfaas.nf.io.pcap import PcapReader, PcapWriter
from nfaas.packages.builder import build_package
from nfaas.platform import Platform
from tests.nf.conftest import EXAMPLES
from tests.nf.kit import TCP, UDP, checksums_right, fields, frame

pytestmark = pytest.mark.timeout(60)
BACKENDS = ["10.1.0.1:8080", "10.1.0.2:8080", "10.1.0.3:8080", "10.1.0.4:8080"]
VIP = "10.0.0.100:80"


def client_traffic(flows: int = 200, per_flow: int = 3) -> list[bytes]:
    rng = np.random.default_rng(11)
    out = []
    for f in range(flows):
        src = f"192.168.{f // 250}.{f % 250 + 1}"
        sport = int(rng.integers(1024, 65535))
        proto = TCP if f % 2 else UDP
        out += [
            frame(src, "10.0.0.100", sport, 80, proto, b"req %d/%d" % (f, i))
            for i in range(per_flow)
        ]
    return [*out, frame("192.168.9.9", "10.0.0.101", 5, 80, UDP, b"not for the VIP")]


def test_lb_from_a_pcap_keeps_flows_on_one_backend(lb_module: ModuleType, tmp_path: Path) -> None:
    capture = tmp_path / "in.pcap"
    with PcapWriter(capture) as writer:
        writer.write(PacketBatch.from_frames(client_traffic()))
    instance = lb_module.build(VIP, BACKENDS, table_size=4099).instance()
    forwarded: list[bytes] = []
    with PcapReader(capture) as reader:
        while len(batch := reader.read(64)):
            forwarded += instance.process(batch).get("out", PacketBatch.empty()).frames()
    assert len(forwarded) == 600
    assert all(checksums_right(f) for f in forwarded)
    by_flow: dict[tuple[object, object, object], set[str]] = {}
    for f in map(fields, forwarded):
        assert f["dport"] == 8080
        by_flow.setdefault((f["src"], f["sport"], f["proto"]), set()).add(str(f["dst"]))
    assert all(len(backends) == 1 for backends in by_flow.values())
    packets = instance.counters.get("backend.packets")
    assert packets.sum() == 600 and packets.min() > 90  # 200 flows over 4 back-ends
    assert instance.counters.get("backend.bytes").sum() == sum(len(f) for f in forwarded)
    assert instance.counters.value("to_vip.dropped") == 1


def test_lb_keeps_existing_flows_when_the_table_changes(lb_module: ModuleType) -> None:
    """The connection table, not the Maglev table, places a flow it has seen."""
    instance = lb_module.build(VIP, BACKENDS, table_size=4099).instance()
    first = instance.process(PacketBatch.from_frames(client_traffic(50, 1)))["out"].frames()
    instance.ctx.table("conns").values[:] = 2  # as if every flow had been placed on back-end 2
    again = instance.process(PacketBatch.from_frames(client_traffic(50, 1)))["out"].frames()
    assert len(first) == len(again) == 50
    assert {fields(f)["dst"] for f in again} == {"10.1.0.3"}


# -- on a live platform --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def example_package(
    tmp_path: Path, name: str, function: str, port: int, env: dict[str, str]
) -> bytes:
    """The example's package, on a free port and with ``env`` in its environment."""
    import yaml

    folder = tmp_path / name
    shutil.copytree(EXAMPLES / name, folder, ignore=shutil.ignore_patterns("__pycache__"))
    descriptor = folder / "Definitions" / f"{function}.yaml"
    doc = yaml.safe_load(descriptor.read_text())
    for trigger in doc["triggers"]:
        if trigger["type"] == "udp":
            trigger["port"] = port
    doc["environment"].update(env)
    descriptor.write_text(yaml.safe_dump(doc))
    return build_package(folder)


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[tuple[Platform, httpx.AsyncClient]]:
    config = Config(data_dir=tmp_path / "data", port=0, node_memory_mb=4096, node_cpu=2,
                    pools_enabled=False, reap_interval_s=0.5)  # fmt: skip
    async with Platform(config) as live:
        transport = httpx.ASGITransport(app=create_asgi(live))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://nfaas", timeout=30
        ) as http:
            yield live, http


async def onboard(http: httpx.AsyncClient, platform: Platform, data: bytes) -> None:
    token = {"Authorization": f"Bearer {platform.operator_token}"}
    r = await http.post(
        "/api/v1/onboard", content=data, headers=token | {"Content-Type": "application/zip"}
    )
    assert r.status_code == 201, r.text


async def exchange(
    port: int, bodies: list[tuple[str, bytes]], wait: float = 1.5
) -> dict[bytes, bytes]:
    """Send each body from its own socket (bound to the given address) at once; the replies."""
    loop = asyncio.get_running_loop()
    socks = []
    for address, _ in bodies:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((address, 0))
        s.setblocking(False)
        socks.append(s)
    try:
        for s, (_, body) in zip(socks, bodies, strict=True):
            s.sendto(body, ("127.0.0.1", port))

        async def answer(s: socket.socket) -> bytes | None:
            try:
                return await asyncio.wait_for(loop.sock_recv(s, 65535), wait)
            except TimeoutError:
                return None

        replies = await asyncio.gather(*(answer(s) for s in socks))
        return {
            body: reply
            for (_, body), reply in zip(bodies, replies, strict=True)
            if reply is not None
        }
    finally:
        for s in socks:
            s.close()


async def test_firewall_as_a_function_on_its_udp_port(platform: tuple[Platform, httpx.AsyncClient],
                                                      tmp_path: Path) -> None:  # fmt: skip
    live, http = platform
    port = free_port()
    rules = [{"action": "deny", "src": "127.0.0.66"}, {"action": "allow", "proto": "udp"}]
    await onboard(http, live, example_package(tmp_path, "nf-firewall", "firewall", port,
                                              {"FIREWALL_RULES": json.dumps(rules)}))  # fmt: skip
    bodies = [("127.0.0.1", b"ok %d" % i) for i in range(30)] + [
        ("127.0.0.66", b"blocked %d" % i) for i in range(5)
    ]
    replies = await exchange(port, bodies)
    assert replies == {b"ok %d" % i: b"ok %d" % i for i in range(30)}
    stats = (await http.get("/fn/nf-firewall/firewall")).json()
    assert stats["counters"]["acl.hits"] == [5, 30, 0]
    assert stats["batches"]["events"] == 35


async def test_lb_as_a_function_fed_tunnelled_frames(platform: tuple[Platform, httpx.AsyncClient],
                                                     tmp_path: Path) -> None:  # fmt: skip
    live, http = platform
    port = free_port()
    await onboard(http, live, example_package(tmp_path, "nf-lb", "lb", port,
                                              {"LB_BACKENDS": ",".join(BACKENDS), "LB_TABLE_SIZE": "4099"}))  # fmt: skip
    traffic = client_traffic(40, 2)
    bodies = [("127.0.0.1", join_tunnel(traffic[i : i + 8])) for i in range(0, 80, 8)]
    replies = await exchange(port, bodies)
    assert len(replies) == len(bodies)
    out = [f for reply in replies.values() for f in split_tunnel(reply)[0]]
    assert len(out) == 80 and all(checksums_right(f) for f in out)
    assert {fields(f)["dst"] for f in out} <= {b.split(":")[0] for b in BACKENDS}
    stats = (await http.get("/fn/nf-lb/lb")).json()
    assert sum(stats["counters"]["backend.packets"]) == 80
    assert stats["tables"]["conns"] == 40
