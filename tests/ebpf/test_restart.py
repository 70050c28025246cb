"""A platform restart leaves no stray eBPF program (issue 4).

A program on an XDP or tc hook outlives the process that attached it. The
platform keeps a ledger of its attachments; a run killed without shutdown
leaves them attached, and the next start takes them off (nfaas cleans rather
than re-attaches: the live configuration of the maps is not kept).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from nfaas.ebpf.ledger import Ledger
from tests.ebpf.conftest import ROOT, VethPair, exists, gone
from tests.ebpf.platform_kit import running_platform

CRASHING_RUN = textwrap.dedent(
    """
    import asyncio, json, os, sys
    from pathlib import Path
    from tests.ebpf.platform_kit import running_platform
    from tests.ebpf.conftest import EXAMPLES

    async def main(tmp, receiver, receiver_ns, sender, sender_ns):
        async with running_platform(Path(tmp)) as api:
            assert (await api.onboard(EXAMPLES / "ebpf-firewall")).status_code == 201
            xdp = await api.instantiate("ebpf-firewall/firewall", interface=receiver, netns=receiver_ns)
            tc = await api.instantiate("ebpf-firewall/firewall-tc", interface=sender, netns=sender_ns)
            print(json.dumps([xdp.json(), tc.json()]), flush=True)
            os._exit(0)  # a crash: no shutdown, nothing detached

    asyncio.run(main(*sys.argv[1:]))
    """
)


async def test_restart_detaches_what_a_crashed_run_left(
    veth_pair: VethPair, tmp_path: Path
) -> None:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", CRASHING_RUN, str(tmp_path), veth_pair.receiver,
         veth_pair.receiver_ns, veth_pair.sender, veth_pair.sender_ns],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    xdp, tc = json.loads(done.stdout.strip().splitlines()[-1])
    try:
        # the crash left both programs on their hooks
        assert "xdp" in veth_pair.xdp_on_receiver()
        assert "tc_firewall" in veth_pair.tc_filters("sender", "egress")
        assert exists("prog", xdp["prog_id"]) and exists("prog", tc["prog_id"])
        ledger = Ledger(tmp_path / "data" / "ebpf" / "attachments.json")
        assert set(ledger.entries()) == {xdp["id"], tc["id"]}

        async with running_platform(tmp_path) as api:
            assert veth_pair.xdp_on_receiver() == ""
            assert veth_pair.tc_filters("sender", "egress") == ""
            assert "clsact" not in veth_pair.qdiscs("sender")
            assert gone("prog", xdp["prog_id"]) and gone("prog", tc["prog_id"])
            assert ledger.entries() == {}
            assert (await api.http.get("/api/v1/ebpf/instances", headers=api.operator)).json() == []
            # the hooks are free for new instances
            r = await api.instantiate(
                "ebpf-firewall/firewall", interface=veth_pair.receiver, netns=veth_pair.receiver_ns
            )
            assert r.status_code == 201, r.text
            assert set(ledger.entries()) == {r.json()["id"]}
        assert ledger.entries() == {}  # an orderly shutdown leaves nothing to clean
    finally:
        # whatever happened, leave no program behind (the namespaces go with the fixture)
        off = ["ip", "-n", veth_pair.receiver_ns, "link", "set", "dev", veth_pair.receiver,
               "xdpgeneric", "off"]  # fmt: skip
        await asyncio.to_thread(subprocess.run, off, capture_output=True, timeout=10)


def test_the_ledger_ignores_what_is_gone_or_replaced(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "attachments.json")
    ledger.add("gone-ns", {"kind": "xdp", "mode": "generic", "netns": "nfaas-none",
                           "interface": "x", "ifindex": 9, "prog_id": 1})  # fmt: skip
    ledger.add("gone-if", {"kind": "xdp", "mode": "generic", "netns": None,
                           "interface": "nfaas-nope0", "ifindex": 9, "prog_id": 1})  # fmt: skip
    # an interface that exists but whose index differs: another interface took the name
    ledger.add("renamed", {"kind": "tc", "direction": "ingress", "netns": None,
                           "interface": "lo", "ifindex": 999999, "prog_id": 1})  # fmt: skip
    assert ledger.clean() == []
    assert ledger.entries() == {}
    (tmp_path / "attachments.json").write_text("{not json")
    assert ledger.entries() == {}
