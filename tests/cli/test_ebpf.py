"""`nfaas ebpf`: the CLI against a real `nfaas up`, attaching the example firewall to a veth."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.cli.test_up import free_port
from tests.ebpf.conftest import EXAMPLES, VethPair, gone, send_and_count


def test_ebpf_commands(veth_pair: VethPair, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "NFAAS_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path),
           "NFAAS_URL": "", "NFAAS_TOKEN": "", "NFAAS_POOLS_ENABLED": "0"}  # fmt: skip
    log = tmp_path / "up.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nfaas", "up", "--port", str(port), "--onboard",
         str(EXAMPLES / "ebpf-firewall")],
        env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip

    def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "nfaas", *args], env=env,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        if ok:
            assert done.returncode == 0, done.stderr + done.stdout
        return done

    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                if (
                    httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json()["status"]
                    == "running"
                ):
                    break
            except httpx.HTTPError:
                time.sleep(0.1)

        done = cli("ebpf", "instantiate", "ebpf-firewall/firewall", "--interface",
                   veth_pair.receiver, "--netns", veth_pair.receiver_ns, "--json")  # fmt: skip
        inst = json.loads(done.stdout)[0]
        assert inst["hook"].startswith("xdp/generic")
        cli("ebpf", "set", inst["id"], "rules", "--key", "proto=udp", "--key", "dport=7201",
            "--value", '{"action": "drop", "counter": 4}')  # fmt: skip
        assert send_and_count(veth_pair, 7201) == 0
        entries = json.loads(cli("ebpf", "entries", inst["id"], "rules").stdout)["entries"]
        assert entries[0]["key"]["dport"] == 7201 and entries[0]["value"]["action"] == "drop"
        assert "counters[4]: packets=20" in cli("ebpf", "show", inst["id"]).stdout
        assert inst["id"] in cli("ebpf", "ls").stdout

        bad = cli("ebpf", "set", inst["id"], "rules", "--key", "proto=udp", "--key", "port=1",
                  "--value", "action=drop", "--value", "counter=1", ok=False)  # fmt: skip
        assert bad.returncode == 1 and "unknown field(s) port" in bad.stderr

        cli("ebpf", "unset", inst["id"], "rules", "--key", "proto=udp", "--key", "dport=7201")
        assert send_and_count(veth_pair, 7201) == 20
        cli("ebpf", "terminate", inst["id"])
        assert veth_pair.xdp_on_receiver() == ""
        assert gone("prog", inst["prog_id"])
        assert "no eBPF instances" in cli("ebpf", "ls").stdout
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
