"""eBPF VNFs through the platform's API (issue 4; EVE025 6.6.1, use case #6).

Onboard the example firewall package, instantiate it on a veth in a network
namespace, send real UDP through it, reconfigure it live with rules written
as JSON, read its counters from /metrics and the JSON API, terminate it and
check with bpftool and iproute2 that nothing is left.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from tests.ebpf.conftest import EXAMPLES, VethPair, bpftool_ids, gone, send_and_count
from tests.ebpf.platform_kit import running_platform

BURST = 20


async def test_firewall_instantiate_reconfigure_metrics_terminate(
    veth_pair: VethPair, tmp_path: Path
) -> None:
    async with running_platform(tmp_path) as api:
        r = await api.onboard(EXAMPLES / "ebpf-firewall")
        assert r.status_code == 201, r.text
        report = await api.http.get(
            "/api/v1/ebpf/functions/ebpf-firewall/firewall", headers=api.operator
        )
        footprint = report.json()["footprint_bytes"]
        assert footprint["map:rules"] > 1024 * (16 + 8) and footprint["total"] > 0
        assert report.json()["programs"]["xdp_firewall"] == "xdp"

        r = await api.instantiate(
            "ebpf-firewall/firewall", interface=veth_pair.receiver, netns=veth_pair.receiver_ns
        )
        assert r.status_code == 201, r.text
        inst = r.json()
        assert inst["state"] == "attached" and inst["prog_id"] > 0
        assert inst["memory_bytes"] == footprint["total"]
        assert "xdp" in veth_pair.xdp_on_receiver()
        assert send_and_count(veth_pair, 7001) == BURST

        # a rule on the whole 5-tuple, and one with wildcards
        rule = {"src": veth_pair.sender_ip, "dst": veth_pair.receiver_ip, "sport": 40001,
                "dport": 7001, "proto": "udp"}  # fmt: skip
        r = await api.put_entry(inst["id"], "rules", rule, {"action": "drop", "counter": 1})
        assert r.status_code == 200, r.text
        assert r.json()["value"] == {"action": "drop", "counter": 1}
        r = await api.put_entry(
            inst["id"], "rules", {"dport": 7002, "proto": "udp"}, {"action": "drop", "counter": 2}
        )
        assert r.status_code == 200, r.text
        assert send_and_count(veth_pair, 7001, sport=40001) == 0
        assert send_and_count(veth_pair, 7001, sport=40002) == BURST  # another source port
        assert send_and_count(veth_pair, 7002, sport=40003) == 0
        assert len(await api.entries(inst["id"], "rules")) == 2

        counters = (await api.counters(inst["id"]))["counters"]
        assert counters["1"]["packets"] == BURST and counters["2"]["packets"] == BURST
        assert counters["1"]["bytes"] > BURST * 42
        text = (await api.http.get("/metrics", headers=api.operator)).text
        assert (
            f'nfaas_ebpf_counter_total{{app="ebpf-firewall",field="packets",function="firewall",'
            f'instance="{inst["id"]}",interface="{veth_pair.receiver}",key="1",map="counters"}} 20.0'
        ) in text
        assert 'nfaas_ebpf_instances{app="ebpf-firewall",function="firewall"' in text
        metrics = (await api.http.get("/api/v1/metrics", headers=api.operator)).json()
        assert metrics["ebpf"][inst["id"]]["counters"]["counters"]["2"]["packets"] == BURST

        r = await api.delete_entry(inst["id"], "rules", {"dport": 7002, "proto": "udp"})
        assert r.status_code == 204, r.text
        assert send_and_count(veth_pair, 7002) == BURST

        prog_id, maps = inst["prog_id"], bpftool_ids("map")
        r = await api.http.delete(f"/api/v1/ebpf/instances/{inst['id']}", headers=api.operator)
        assert r.status_code == 204
        assert veth_pair.xdp_on_receiver() == ""
        assert gone("prog", prog_id)
        assert (await api.http.get("/api/v1/ebpf/instances", headers=api.operator)).json() == []
        assert send_and_count(veth_pair, 7001, sport=40001) == BURST
        assert bpftool_ids("map") <= maps
        # the hook is free again
        r = await api.instantiate(
            "ebpf-firewall/firewall", interface=veth_pair.receiver, netns=veth_pair.receiver_ns
        )
        assert r.status_code == 201, r.text
        second = r.json()["prog_id"]
    # platform shutdown detaches everything
    assert veth_pair.xdp_on_receiver() == ""
    assert gone("prog", second)


async def test_tc_egress_firewall(veth_pair: VethPair, tmp_path: Path) -> None:
    async with running_platform(tmp_path) as api:
        assert (await api.onboard(EXAMPLES / "ebpf-firewall")).status_code == 201
        # on the sender's end, egress: packets are dropped before they leave
        r = await api.instantiate(
            "ebpf-firewall/firewall-tc", interface=veth_pair.sender, netns=veth_pair.sender_ns
        )
        assert r.status_code == 201, r.text
        inst = r.json()
        assert inst["hook"].startswith("tc/egress") and inst["program_type"] == "tc"
        assert "tc_firewall" in veth_pair.tc_filters("sender", "egress")
        assert "clsact" in veth_pair.qdiscs("sender")
        assert send_and_count(veth_pair, 7005) == BURST
        r = await api.put_entry(
            inst["id"], "rules", {"dport": 7005, "proto": "udp"}, {"action": "drop", "counter": 5}
        )
        assert r.status_code == 200
        assert send_and_count(veth_pair, 7005) == 0
        assert send_and_count(veth_pair, 7006) == BURST
        assert (await api.counters(inst["id"]))["counters"]["5"]["packets"] == BURST

        # an ingress instance of the same program on the same interface is another hook
        r = await api.instantiate(
            "ebpf-firewall/firewall-tc",
            interface=veth_pair.sender,
            netns=veth_pair.sender_ns,
            direction="ingress",
        )
        assert r.status_code == 201, r.text
        ingress = r.json()
        r = await api.http.delete(f"/api/v1/ebpf/instances/{inst['id']}", headers=api.operator)
        assert r.status_code == 204
        assert veth_pair.tc_filters("sender", "egress") == ""
        assert "tc_firewall" in veth_pair.tc_filters("sender", "ingress")
        assert send_and_count(veth_pair, 7005) == BURST
        r = await api.http.delete(f"/api/v1/ebpf/instances/{ingress['id']}", headers=api.operator)
        assert r.status_code == 204
        assert veth_pair.tc_filters("sender", "ingress") == ""
        assert "clsact" not in veth_pair.qdiscs("sender")  # nfaas made it, nfaas removed it
        assert gone("prog", inst["prog_id"]) and gone("prog", ingress["prog_id"])


async def test_termination_racing_with_traffic(veth_pair: VethPair, tmp_path: Path) -> None:
    async with running_platform(tmp_path) as api:
        assert (await api.onboard(EXAMPLES / "ebpf-firewall")).status_code == 201
        r = await api.instantiate(
            "ebpf-firewall/firewall", interface=veth_pair.receiver, netns=veth_pair.receiver_ns
        )
        inst = r.json()
        await api.put_entry(
            inst["id"], "rules", {"dport": 7009, "proto": "udp"}, {"action": "drop", "counter": 9}
        )
        tx = veth_pair.udp_socket("sender")
        stop = threading.Event()

        def flood() -> None:
            deadline = time.monotonic() + 5.0  # bounded even if the test hangs
            while not stop.is_set() and time.monotonic() < deadline:
                tx.sendto(b"x" * 64, (veth_pair.receiver_ip, 7009))

        sender = threading.Thread(target=flood, daemon=True)
        sender.start()
        try:
            await asyncio.sleep(0.05)
            # reads and a rule change while packets flow, then termination
            assert (await api.counters(inst["id"]))["counters"]["9"]["packets"] > 0
            writes = [
                api.put_entry(
                    inst["id"],
                    "rules",
                    {"dport": 7010 + i, "proto": "udp"},
                    {"action": "drop", "counter": 10},
                )
                for i in range(5)
            ]
            terminate = api.http.delete(
                f"/api/v1/ebpf/instances/{inst['id']}", headers=api.operator
            )
            results = await asyncio.gather(*writes, terminate)
        finally:
            stop.set()
            sender.join(timeout=10)
            tx.close()
        assert results[-1].status_code == 204
        # each write either landed before the termination or was refused with a problem
        assert all(r.status_code in (200, 404, 409) for r in results[:-1])
        assert veth_pair.xdp_on_receiver() == ""
        assert gone("prog", inst["prog_id"])
        assert send_and_count(veth_pair, 7009, 5) == 5
        assert (await api.http.get("/healthz")).json() == {"status": "running"}
