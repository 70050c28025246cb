"""Bad input to eBPF VNFs (issue 4): each a precise error, nothing leaked, the platform serving.

Onboarding refuses what does not match (maps, section, program, kernel
needs) and stores nothing; instantiation refuses a program the verifier
rejects, a missing interface and an occupied hook and leaves nothing loaded
or attached; reconfiguration refuses a rule it cannot encode and leaves the
map as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from nfaas.ebpf import BpfProgram, XdpHook
from tests.ebpf.conftest import EXAMPLES, VethPair, bpftool_ids, gone, send_and_count
from tests.ebpf.platform_kit import EbpfApi, example_copy, running_platform

FIREWALL = "ebpf-firewall/firewall"


def edit_descriptor(source: Path, name: str, change: Any) -> None:
    path = source / "Definitions" / f"{name}.yaml"
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


async def nothing_stored(api: EbpfApi) -> None:
    assert (await api.http.get("/api/v1/functions", headers=api.operator)).json() == []
    packages = (await api.http.get("/api/v1/vnf_packages", headers=api.operator)).json()
    assert [p for p in packages if p["onboardingState"] == "ONBOARDED"] == []
    assert (await api.http.get("/healthz")).json() == {"status": "running"}


async def refused(api: EbpfApi, source: Path) -> dict[str, Any]:
    r = await api.onboard(source)
    assert r.status_code == 422, r.text
    await nothing_stored(api)
    problem: dict[str, Any] = r.json()
    return problem


async def test_map_mismatches_are_named_and_nothing_is_stored(tmp_path: Path) -> None:
    async with running_platform(tmp_path / "p") as api:
        source = example_copy(tmp_path, "ebpf-firewall")

        def shrink_key(doc: dict[str, Any]) -> None:
            rules = doc["ebpf"]["maps"][0]
            rules["key_size"] = 4
            rules["key"] = [{"name": "proto", "type": "u8"}, {"name": "pad", "type": "pad",
                            "size": 1}, {"name": "dport", "type": "be16"}]  # fmt: skip
            doc["ebpf"]["maps"][1]["type"] = "array"
            doc["ebpf"]["maps"][1]["max_entries"] = 64

        edit_descriptor(source, "firewall", shrink_key)
        problem = await refused(api, source)
        assert problem["type"] == "urn:nfaas:problem:ebpf-object-mismatch"
        errors = {e["loc"]: e["msg"] for e in problem["errors"]}
        assert errors["ebpf.maps.0.key_size"] == (
            "map rules has key_size 16 in the object, the descriptor says 4"
        )
        assert errors["ebpf.maps.1.type"] == "map counters is percpu_array in the object, not array"
        assert (
            "max_entries 1024 in the object, the descriptor says 64"
            in errors["ebpf.maps.1.max_entries"]
        )

        source = example_copy(tmp_path / "b", "ebpf-firewall")
        edit_descriptor(source, "firewall", lambda d: d["ebpf"]["maps"].pop(1))
        problem = await refused(api, source)
        assert (
            "the object has a map 'counters' the descriptor does not declare" in problem["detail"]
        )

        source = example_copy(tmp_path / "c", "ebpf-firewall")
        edit_descriptor(source, "firewall", lambda d: d["ebpf"]["maps"][1].update(name="hits"))
        problem = await refused(api, source)
        assert (
            "ebpf.maps.1.name: the object has no map 'hits' (it has: counters, rules)"
            in (problem["detail"])
        )


async def test_missing_section_or_program_is_refused(tmp_path: Path) -> None:
    async with running_platform(tmp_path / "p") as api:
        source = example_copy(tmp_path / "a", "ebpf-firewall")
        edit_descriptor(
            source, "firewall", lambda d: d["ebpf"]["program"].update(section="xdp.frags")
        )
        problem = await refused(api, source)
        assert problem["errors"] == [
            {"loc": "ebpf.program.section",
             "msg": "program xdp_firewall is in section 'xdp', not 'xdp.frags'"}
        ]  # fmt: skip

        source = example_copy(tmp_path / "b", "ebpf-firewall")
        edit_descriptor(source, "firewall", lambda d: d.update(handler="xdp_nope"))
        problem = await refused(api, source)
        assert (
            "the object has no program 'xdp_nope' (it has: xdp_firewall (section xdp), "
            "tc_firewall (section tc))" in problem["detail"]
        )

        # an XDP descriptor naming the tc program: right section, wrong type
        source = example_copy(tmp_path / "c", "ebpf-firewall")
        edit_descriptor(source, "firewall", lambda d: d.update(handler="tc_firewall"))
        problem = await refused(api, source)
        assert (
            "ebpf.program.section" in problem["detail"] and "ebpf.program.type" in problem["detail"]
        )


async def test_kernel_needs_and_source_errors_are_refused(tmp_path: Path) -> None:
    async with running_platform(tmp_path / "p") as api:
        source = example_copy(tmp_path / "a", "ebpf-firewall")
        edit_descriptor(source, "firewall", lambda d: d["ebpf"]["requires"].update(kernel="99.0"))
        problem = await refused(api, source)
        assert (
            "ebpf.requires.kernel: needs kernel 99.0 or newer, this node runs" in problem["detail"]
        )

        source = example_copy(tmp_path / "b", "ebpf-firewall")
        edit_descriptor(
            source, "firewall", lambda d: d["ebpf"]["requires"].update(helpers=["bpf_no_such"])
        )
        problem = await refused(api, source)
        assert "unknown helper(s) bpf_no_such" in problem["detail"]

        # a helper this kernel does not give XDP programs
        source = example_copy(tmp_path / "c", "ebpf-firewall")
        edit_descriptor(
            source,
            "firewall",
            lambda d: d["ebpf"]["requires"].update(helpers=["bpf_skb_vlan_push"]),
        )
        problem = await refused(api, source)
        assert "does not offer bpf_skb_vlan_push to xdp programs" in problem["detail"]

        source = example_copy(tmp_path / "d", "ebpf-firewall")
        c_file = source / "Files" / "firewall" / "firewall.bpf.c"
        c_file.write_text(c_file.read_text().replace("count(0, len);\n\treturn FW_PASS;", "oops;"))
        problem = await refused(api, source)
        assert "does not compile" in problem["detail"] and "oops" in problem["detail"]


# An out-of-bounds packet read: no check against data_end before the load.
OUT_OF_BOUNDS = """
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} seen SEC(".maps");

SEC("xdp")
int xdp_oob(struct xdp_md *ctx)
{
    unsigned char *data = (void *)(long)ctx->data;
    return data[20] == 0xff ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
"""


def oob_package(root: Path) -> Path:
    (root / "Definitions").mkdir(parents=True)
    (root / "Files" / "oob").mkdir(parents=True)
    (root / "Files" / "oob" / "oob.bpf.c").write_text(OUT_OF_BOUNDS)
    app = {"kind": "ServerlessApplication", "name": "oob", "version": "1.0.0",
           "provider": "tests", "functions": [{"name": "oob", "descriptor": "Definitions/oob.yaml"}]}  # fmt: skip
    fn = {
        "kind": "ServerlessFunction", "name": "oob", "version": "1.0.0", "application": "oob",
        "runtime": {"name": "ebpf", "version": "1"}, "handler": "xdp_oob",
        "code": {"path": "Files/oob/oob.bpf.c"},
        "ebpf": {"program": {"type": "xdp", "section": "xdp"},
                 "maps": [{"name": "seen", "type": "array", "key_size": 4, "value_size": 8,
                           "max_entries": 1, "role": "state"}]},
    }  # fmt: skip
    (root / "Definitions" / "oob.yaml").write_text(yaml.safe_dump(app))
    (root / "Definitions" / "oob.yaml").write_text(yaml.safe_dump(fn))
    (root / "Definitions" / "app.yaml").write_text(yaml.safe_dump(app))
    return root


async def test_verifier_rejection_reaches_the_user_and_leaves_nothing(
    veth_pair: VethPair, tmp_path: Path
) -> None:
    async with running_platform(tmp_path / "p") as api:
        r = await api.onboard(oob_package(tmp_path / "oob"))
        assert r.status_code == 201, r.text  # the verifier runs at instantiation
        progs, maps = bpftool_ids("prog"), bpftool_ids("map")
        r = await api.instantiate(
            "oob/oob", interface=veth_pair.receiver, netns=veth_pair.receiver_ns
        )
        assert r.status_code == 422, r.text
        problem = r.json()
        assert problem["type"] == "urn:nfaas:problem:ebpf-verifier-error"
        assert "the kernel verifier rejected xdp_oob" in problem["detail"]
        assert "invalid access to packet" in problem["detail"]
        assert "invalid access to packet" in problem["verifier_log"]
        assert bpftool_ids("prog") <= progs
        assert all(gone("map", i) for i in bpftool_ids("map") - maps)
        assert veth_pair.xdp_on_receiver() == ""
        assert (await api.http.get("/api/v1/ebpf/instances", headers=api.operator)).json() == []
        assert api.platform.capacity.snapshot()["reservations"] == 0
        # the hook is still free and the platform serves
        assert (await api.onboard(EXAMPLES / "ebpf-firewall")).status_code == 201
        r = await api.instantiate(
            FIREWALL, interface=veth_pair.receiver, netns=veth_pair.receiver_ns
        )
        assert r.status_code == 201, r.text


async def test_missing_interface_and_occupied_hook(veth_pair: VethPair, tmp_path: Path) -> None:
    async with running_platform(tmp_path / "p") as api:
        assert (await api.onboard(EXAMPLES / "ebpf-firewall")).status_code == 201
        progs = bpftool_ids("prog")
        r = await api.instantiate(FIREWALL, interface="nfaas-nope0", netns=veth_pair.receiver_ns)
        assert r.status_code == 404, r.text
        assert "no interface 'nfaas-nope0' in netns" in r.json()["detail"]
        r = await api.instantiate(FIREWALL)  # the descriptor names no interface
        assert r.status_code == 400 and "give an interface" in r.json()["detail"]
        r = await api.instantiate(FIREWALL, interface="lo", netns="nfaas-no-such-ns")
        assert r.status_code in (400, 404), r.text
        assert all(gone("prog", i) for i in bpftool_ids("prog") - progs)

        r = await api.instantiate(
            FIREWALL, interface=veth_pair.receiver, netns=veth_pair.receiver_ns
        )
        assert r.status_code == 201
        first = r.json()
        await api.put_entry(first["id"], "rules", {"dport": 7011, "proto": "udp"},
                            {"action": "drop", "counter": 1})  # fmt: skip
        progs = bpftool_ids("prog")
        r = await api.instantiate(
            FIREWALL, interface=veth_pair.receiver, netns=veth_pair.receiver_ns
        )
        assert r.status_code == 409, r.text
        assert f"held by eBPF instance {first['id']}" in r.json()["detail"]
        # the tc variant on the same interface's ingress is another hook; the first still works
        assert bpftool_ids("prog") <= progs
        assert send_and_count(veth_pair, 7011) == 0
        assert len((await api.http.get("/api/v1/ebpf/instances", headers=api.operator)).json()) == 1
        await api.http.delete(f"/api/v1/ebpf/instances/{first['id']}", headers=api.operator)

        # a program attached outside nfaas: the kernel refuses, nfaas says so
        from tests.ebpf.conftest import firewall_object

        async with BpfProgram(firewall_object(), "xdp_firewall") as foreign:
            await foreign.load()
            await foreign.attach(XdpHook(veth_pair.receiver, netns=veth_pair.receiver_ns))
            progs = bpftool_ids("prog")
            r = await api.instantiate(
                FIREWALL, interface=veth_pair.receiver, netns=veth_pair.receiver_ns
            )
            assert r.status_code == 409 and "already has an XDP program" in r.json()["detail"]
            assert bpftool_ids("prog") <= progs
            assert "xdp" in veth_pair.xdp_on_receiver()
        assert veth_pair.xdp_on_receiver() == ""


async def test_bad_rules_are_refused_and_the_map_is_unchanged(
    veth_pair: VethPair, tmp_path: Path
) -> None:
    async with running_platform(tmp_path / "p") as api:
        assert (await api.onboard(EXAMPLES / "ebpf-firewall")).status_code == 201
        r = await api.instantiate(
            FIREWALL, interface=veth_pair.receiver, netns=veth_pair.receiver_ns
        )
        inst = r.json()["id"]
        good = {"dport": 7012, "proto": "udp"}
        assert (
            await api.put_entry(inst, "rules", good, {"action": "drop", "counter": 3})
        ).status_code == 200
        before = await api.entries(inst, "rules")

        cases: list[tuple[Any, Any, int, str]] = [
            ({"dport": 7013, "proto": "udp", "port": 1}, {"action": "drop", "counter": 1}, 400,
             "unknown field(s) port"),
            ({"dport": 7013}, {"action": "drop", "counter": 1}, 400, "field 'proto' is required"),
            ({"dport": 7013, "proto": "udpx"}, {"action": "drop", "counter": 1}, 400,
             "field 'proto' (u8) takes an integer or one of icmp, tcp, udp, not 'udpx'"),
            ({"dport": 70000, "proto": "udp"}, {"action": "drop", "counter": 1}, 400,
             "field 'dport' (be16): 70000 does not fit in 2 byte(s)"),
            ({"src": "10.0.0.300", "proto": "udp"}, {"action": "drop", "counter": 1}, 400,
             "field 'src' (ipv4) takes an address"),
            ({"src": "::1", "proto": "udp"}, {"action": "drop", "counter": 1}, 400,
             "takes an ipv4 address"),
            (good, {"action": "reject", "counter": 1}, 400, "field 'action' (u32)"),
            (good, {"action": "drop"}, 400, "field 'counter' is required"),
            (good, {"action": True, "counter": 1}, 400, "takes an integer"),
            (good, "drop", 400, "value"),
        ]  # fmt: skip
        for key, value, status, message in cases:
            r = await api.put_entry(inst, "rules", key, value)
            assert r.status_code == status, (key, value, r.text)
            assert message in r.json()["detail"], (message, r.json())
        r = await api.put_entry(inst, "counters", {"slot": 1}, {"packets": 0, "bytes": 0})
        assert r.status_code == 409 and "only maps with role config" in r.json()["detail"]
        r = await api.put_entry(inst, "nosuch", good, {"action": "drop", "counter": 1})
        assert r.status_code == 404 and "declared: rules, counters" in r.json()["detail"]
        r = await api.delete_entry(inst, "rules", {"dport": 9, "proto": "udp"})
        assert r.status_code == 404
        r = await api.http.put("/api/v1/ebpf/instances/ebpf-none/maps/rules/entries",
                               json={"key": good, "value": {}}, headers=api.operator)  # fmt: skip
        assert r.status_code == 404

        assert await api.entries(inst, "rules") == before
        assert send_and_count(veth_pair, 7012) == 0
        assert send_and_count(veth_pair, 7013) == 20


async def test_tenants_may_not_attach_and_see_only_their_instances(
    veth_pair: VethPair, tmp_path: Path
) -> None:
    async with running_platform(tmp_path / "p") as api:
        acme = {"Authorization": f"Bearer {api.platform.auth.issue('acme')}"}
        other = {"Authorization": f"Bearer {api.platform.auth.issue('other')}"}
        assert (await api.onboard(EXAMPLES / "ebpf-firewall", acme)).status_code == 201
        r = await api.http.post("/api/v1/ebpf/instances", headers=acme,
                                json={"function": FIREWALL, "interface": veth_pair.receiver,
                                      "netns": veth_pair.receiver_ns})  # fmt: skip
        assert r.status_code == 403
        r = await api.instantiate(
            FIREWALL, interface=veth_pair.receiver, netns=veth_pair.receiver_ns
        )
        inst = r.json()["id"]
        path = f"/api/v1/ebpf/instances/{inst}/maps/rules/entries"
        body = {"key": {"dport": 1, "proto": "udp"}, "value": {"counter": 1}}
        assert (await api.http.put(path, json=body, headers=acme)).status_code == 200
        assert (await api.http.put(path, json=body, headers=other)).status_code == 404
        assert (await api.http.get("/api/v1/ebpf/instances", headers=other)).json() == []
        assert len((await api.http.get("/api/v1/ebpf/instances", headers=acme)).json()) == 1
