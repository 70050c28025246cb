"""The example eBPF VNFs as packages, with real packets (issue 4, example VNFs 2 and 3).

The rate limiter drops a UDP flood per source at the XDP hook; the hybrid IoT
ingress (EVE025 5.6.1) drops malformed and unauthorised datagrams in XDP and
hands the rest to a Python function of the same application through the
platform's UDP trigger, which answers.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from pathlib import Path

from nfaas.ebpf.netns import run_in_netns
from tests.ebpf.conftest import EXAMPLES, VethPair, send_and_count
from tests.ebpf.platform_kit import example_copy, running_platform


async def test_rate_limiter_drops_a_flood_per_source(veth_pair: VethPair, tmp_path: Path) -> None:
    async with running_platform(tmp_path) as api:
        assert (await api.onboard(EXAMPLES / "ebpf-ratelimit")).status_code == 201
        r = await api.instantiate(
            "ebpf-ratelimit/ratelimit", interface=veth_pair.receiver, netns=veth_pair.receiver_ns
        )
        assert r.status_code == 201, r.text
        inst = r.json()["id"]
        assert send_and_count(veth_pair, 7100, 50) == 50  # no limit configured yet

        r = await api.put_entry(inst, "limits", {"index": 0}, {"rate_pps": 2, "burst": 5})
        assert r.status_code == 200, r.text
        # a burst of 50 from one source: the bucket's 5, and at 2/s hardly any refill
        got = send_and_count(veth_pair, 7101, 50)
        assert 5 <= got <= 7
        buckets = await api.entries(inst, "buckets")
        assert [b["key"] for b in buckets] == [{"source": veth_pair.sender_ip}]
        counters = (await api.counters(inst))["verdicts"]
        assert counters["dropped"]["packets"] == 50 - got
        assert counters["passed"]["packets"] == 50 + got

        # another source has a bucket of its own
        def add_address() -> None:
            import subprocess

            subprocess.run(["ip", "-n", veth_pair.sender_ns, "addr", "add", "10.213.0.3/24",
                            "dev", veth_pair.sender], check=True, timeout=10)  # fmt: skip

        add_address()
        rx = veth_pair.udp_socket("receiver", 7102)
        tx = run_in_netns(veth_pair.sender_ns, lambda: _bound("10.213.0.3"))
        try:
            rx.settimeout(0.3)
            for _ in range(20):
                tx.sendto(b"other source", (veth_pair.receiver_ip, 7102))
            arrived = 0
            while True:
                try:
                    rx.recv(100)
                except TimeoutError:
                    break
                arrived += 1
        finally:
            rx.close()
            tx.close()
        assert 5 <= arrived <= 7

        # lifting the limit lets everything through again
        r = await api.put_entry(inst, "limits", {"index": 0}, {"rate_pps": 0, "burst": 0})
        assert r.status_code == 200
        assert send_and_count(veth_pair, 7103, 30) == 30


def _bound(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 0))
    return sock


def datagram(device: int, reading: bytes, magic: bytes = b"NFI1") -> bytes:
    return magic + struct.pack("!I", device) + reading


async def test_hybrid_iot_ingress(node_veth: VethPair, tmp_path: Path) -> None:
    source = example_copy(tmp_path, "iot-ingress")
    port = _free_udp_port(node_veth.receiver_ip)
    ingest = source / "Definitions" / "ingest.yaml"
    ingest.write_text(ingest.read_text().replace("port: 9101", f"port: {port}"))
    async with running_platform(tmp_path / "p", trigger_host=node_veth.receiver_ip) as api:
        r = await api.onboard(source)
        assert r.status_code == 201, r.text
        # the guard on the interface the devices reach (the node's end of the veth)
        r = await api.instantiate("iot-ingress/guard", interface=node_veth.receiver)
        assert r.status_code == 201, r.text
        inst = r.json()["id"]
        r = await api.put_entry(inst, "settings", {"index": 0}, {"port": port})
        assert r.status_code == 200, r.text
        r = await api.put_entry(inst, "devices", {"device": 17}, {"state": "allowed"})
        assert r.status_code == 200, r.text
        r = await api.put_entry(inst, "devices", {"device": 18}, {"state": "denied"})
        assert r.status_code == 200, r.text

        sock = node_veth.udp_socket("sender")
        try:
            sock.settimeout(5.0)
            sock.sendto(datagram(17, b"temp=21.5"), (node_veth.receiver_ip, port))
            # the platform serves on this event loop: wait for answers off it
            assert await asyncio.to_thread(sock.recv, 2048) == b"ack device=17 temp=21.5"
            sock.settimeout(0.5)
            for bad in (b"NF", datagram(17, b"x", magic=b"XXXX"), datagram(18, b"t=1"),
                        datagram(99, b"t=2")):  # fmt: skip
                sock.sendto(bad, (node_veth.receiver_ip, port))
            try:
                answer = await asyncio.to_thread(sock.recv, 2048)
            except TimeoutError:
                answer = b""
            assert answer == b""
            sock.settimeout(5.0)
            sock.sendto(datagram(17, b"temp=22.0"), (node_veth.receiver_ip, port))
            assert await asyncio.to_thread(sock.recv, 2048) == b"ack device=17 temp=22.0"
        finally:
            sock.close()

        verdicts = (await api.counters(inst))["verdicts"]
        assert verdicts["passed"]["packets"] == 2
        assert verdicts["malformed"]["packets"] == 2
        assert verdicts["unauthorised"]["packets"] == 2
        # only what the guard passed reached the Python function
        stats = (await api.http.get("/api/v1/metrics", headers=api.operator)).json()
        assert stats["functions"]["iot-ingress/ingest@1.0.0"]["invocations"] == 2


def _free_udp_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])
