"""eBPF VNFs against their floors: ``.venv/bin/python benchmarks/ebpf.py [--quick]`` (issue 4).

On one veth pair, in one run (the receiving end is the node's, the sender in a
namespace of its own, a small C sender with sendmmsg flooding UDP at it):

- floor: packets per second the receiving interface takes with no program;
- the example XDP firewall dropping the flood (a drop rule), and passing it
  (a pass rule), counted by the firewall's own counters;
- the same rule applied by a Python function behind the platform's UDP
  trigger: events it decided per second;
- instantiation (load + verify + attach) through the platform, p50 over N;
- reconfiguration latency: one rule written through the instance (layout
  encoding included) and through the HTTP API, against a bare map update.

Writes ``benchmarks/results/ebpf.json`` and prints a table with the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from benchmarks.figures import Figure, Goal, Section
from benchmarks.stats import summarize
from nfaas.api.app import create_asgi
from nfaas.config import Config
from nfaas.packages.builder import build_package
from nfaas.platform import Platform

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "ebpf.json"
PORT = 7300

SENDER_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* blast DST PORT SECONDS: UDP datagrams of 64 bytes, 64 per sendmmsg */
int main(int argc, char **argv)
{
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
	struct mmsghdr msgs[64];
	struct iovec iov;
	char payload[64] = "nfaas benchmark";
	double seconds = atof(argv[3]);
	long sent = 0;
	struct timespec start, now;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	inet_pton(AF_INET, argv[1], &to.sin_addr);
	iov.iov_base = payload;
	iov.iov_len = sizeof(payload);
	memset(msgs, 0, sizeof(msgs));
	for (int i = 0; i < 64; i++) {
		msgs[i].msg_hdr.msg_name = &to;
		msgs[i].msg_hdr.msg_namelen = sizeof(to);
		msgs[i].msg_hdr.msg_iov = &iov;
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &start);
	do {
		int n = sendmmsg(fd, msgs, 64, 0);
		if (n > 0)
			sent += n;
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while ((now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9 < seconds);
	printf("%ld\n", sent);
	return 0;
}
"""

USERSPACE_FIREWALL = """
# the example firewall's rule, applied in user space: drop UDP to the bench port
RULES = {("udp", %d): "drop"}


def handle(event, context):
    action = RULES.get(("udp", %d), "pass")
    return b"" if action == "drop" else event.body
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class Path2:
    """A veth pair: ``sender`` in namespace ``ns``, ``receiver`` in the node's namespace."""

    def __init__(self) -> None:
        n = os.getpid() % 100000
        self.ns, self.sender, self.receiver = f"nfb-s{n}", f"nfbs{n}", f"nfbr{n}"
        self.sender_ip, self.receiver_ip = "10.215.77.1", "10.215.77.2"

    def __enter__(self) -> Path2:
        ip("netns", "add", self.ns)
        ip("link", "add", self.receiver, "type", "veth", "peer", "name", self.sender,
           "netns", self.ns)  # fmt: skip
        ip("-n", self.ns, "addr", "add", f"{self.sender_ip}/30", "dev", self.sender)
        ip("-n", self.ns, "link", "set", "dev", self.sender, "up")
        ip("addr", "add", f"{self.receiver_ip}/30", "dev", self.receiver)
        ip("link", "set", "dev", self.receiver, "up")
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["ip", "link", "del", self.receiver], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, timeout=10)

    def rx_packets(self) -> int:
        return int(Path(f"/sys/class/net/{self.receiver}/statistics/rx_packets").read_text())


async def blast(path: Path2, sender: Path, seconds: float) -> int:
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", path.ns, str(sender), path.receiver_ip, str(PORT), str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return int(out.decode().strip() or 0)


async def rate(path: Path2, sender: Path, seconds: float, read: Any) -> dict[str, float]:
    """Run the sender for ``seconds``; what ``read()`` counted per second, and what was sent."""
    before, rx_before = read(), path.rx_packets()
    started = time.perf_counter()
    sent = await blast(path, sender, seconds)
    await asyncio.sleep(0.2)  # let the receiving side drain
    elapsed = time.perf_counter() - started - 0.2
    return {
        "pps": (read() - before) / elapsed,
        "sent_pps": sent / elapsed,
        "rx_pps": (path.rx_packets() - rx_before) / elapsed,
    }


def userspace_package(tmp: Path) -> Path:
    src = tmp / "userspace"
    (src / "Definitions").mkdir(parents=True)
    (src / "Files" / "fw").mkdir(parents=True)
    (src / "Files" / "fw" / "fw.py").write_text(USERSPACE_FIREWALL % (PORT, PORT))
    fn = {"kind": "ServerlessFunction", "name": "fw", "version": "1.0.0", "application": "userfw",
          "runtime": {"name": "python", "version": "3.11"}, "handler": "fw:handle",
          "code": {"path": "Files/fw"}, "triggers": [{"type": "udp", "port": PORT, "reply": False}],
          "scaling": {"instance_threshold": 4, "concurrency": 8, "queue_size": 1024}}  # fmt: skip
    app = {"kind": "ServerlessApplication", "name": "userfw", "version": "1.0.0",
           "provider": "bench", "functions": [{"name": "fw", "descriptor": "Definitions/fw.yaml"}]}  # fmt: skip
    (src / "Definitions" / "fw.yaml").write_text(json.dumps(fn))
    (src / "Definitions" / "app.yaml").write_text(json.dumps(app))
    return src


async def run(quick: bool) -> dict[str, Any]:
    seconds = 1.0 if quick else 3.0
    rounds = 20 if quick else 100
    tmp = Path(tempfile.mkdtemp(prefix="nfaas-bench-ebpf-"))
    sender = tmp / "blast"
    compile_sender = ["clang", "-O2", "-o", str(sender), "-x", "c", "-"]
    await asyncio.to_thread(
        subprocess.run, compile_sender, input=SENDER_C.encode(), check=True, timeout=60
    )
    out: dict[str, Any] = {"seconds_per_rate": seconds, "rounds": rounds}
    with Path2() as path:
        config = Config(data_dir=tmp / "data", port=0, pools_enabled=False, node_memory_mb=4096,
                        trigger_host=path.receiver_ip, log_level="warning")  # fmt: skip
        async with Platform(config) as platform:
            http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_asgi(platform)),
                                     base_url="http://nfaas")  # fmt: skip
            op = {"Authorization": f"Bearer {platform.operator_token}",
                  "Content-Type": "application/zip"}  # fmt: skip
            r = await http.post("/api/v1/onboard", headers=op,
                                content=build_package(ROOT / "examples" / "ebpf-firewall"))  # fmt: skip
            assert r.status_code == 201, r.text

            out["floor_no_program"] = await rate(path, sender, seconds, path.rx_packets)

            # instantiation: load + verify + attach, and the whole API call
            inits, calls = [], []
            for _ in range(rounds):
                started = time.perf_counter()
                inst = await platform.ebpf.instantiate("ebpf-firewall", "firewall",
                                                       interface=path.receiver)  # fmt: skip
                calls.append(time.perf_counter() - started)
                inits.append(inst.init_seconds)
                await platform.ebpf.terminate(inst.id)
            out["instantiate_load_verify_attach_ms"] = summarize(inits).scaled(1000).as_dict()
            out["instantiate_call_ms"] = summarize(calls).scaled(1000).as_dict()

            inst = await platform.ebpf.instantiate("ebpf-firewall", "firewall",
                                                   interface=path.receiver)  # fmt: skip
            counters = inst.program.maps["counters"]

            def slot(n: int) -> Any:
                key = struct.pack("=I", n)
                return lambda: sum(struct.unpack("=QQ", v)[0]
                                   for v in counters.lookup_per_cpu(key) or [])  # fmt: skip

            rule = {"dport": PORT, "proto": "udp"}
            inst.write("rules", rule, {"action": "drop", "counter": 1})
            out["xdp_drop"] = await rate(path, sender, seconds, slot(1))
            inst.write("rules", rule, {"action": "pass", "counter": 2})
            out["xdp_pass"] = await rate(path, sender, seconds, slot(2))

            # reconfiguration latency
            raw_key = struct.pack("!4s4sHHB3x", bytes(4), bytes(4), 0, PORT + 1, 17)
            raw_value = struct.pack("=II", 1, 3)
            bare, through, api = [], [], []
            rules_map = inst.program.maps["rules"]
            for i in range(rounds):
                started = time.perf_counter()
                rules_map.update(raw_key, raw_value)
                bare.append(time.perf_counter() - started)
                started = time.perf_counter()
                inst.write("rules", {"dport": PORT + 1, "proto": "udp"},
                           {"action": "drop", "counter": 3 + i % 2})  # fmt: skip
                through.append(time.perf_counter() - started)
                started = time.perf_counter()
                r = await http.put(
                    f"/api/v1/ebpf/instances/{inst.id}/maps/rules/entries",
                    json={"key": {"dport": PORT + 1, "proto": "udp"},
                          "value": {"action": "drop", "counter": 3}},
                    headers={"Authorization": op["Authorization"]},
                )  # fmt: skip
                api.append(time.perf_counter() - started)
                assert r.status_code == 200, r.text
            out["reconfigure_bare_map_update_us"] = summarize(bare).scaled(1e6).as_dict()
            out["reconfigure_instance_write_us"] = summarize(through).scaled(1e6).as_dict()
            out["reconfigure_http_api_us"] = summarize(api).scaled(1e6).as_dict()
            await platform.ebpf.terminate(inst.id)

            # the same rule in user space: a Python function behind the UDP trigger
            r = await http.post("/api/v1/onboard", headers=op,
                                content=build_package(userspace_package(tmp)))  # fmt: skip
            assert r.status_code == 201, r.text
            key = ("userfw", "fw", "1.0.0")

            def decided() -> int:
                return platform.telemetry.stats(key).invocations

            await rate(path, sender, 0.3, decided)  # warm: instances started
            out["python_udp_trigger"] = await rate(path, sender, seconds, decided)
            out["python_trigger_dropped"] = platform.telemetry.dropped_counts()
            await http.aclose()
    floor = out["floor_no_program"]["pps"]
    out["ratios"] = {
        "xdp_drop_over_python": out["xdp_drop"]["pps"] / max(out["python_udp_trigger"]["pps"], 1),
        "xdp_pass_over_python": out["xdp_pass"]["pps"] / max(out["python_udp_trigger"]["pps"], 1),
        "xdp_drop_over_floor": out["xdp_drop"]["pps"] / max(floor, 1),
        "xdp_pass_over_floor": out["xdp_pass"]["pps"] / max(floor, 1),
        "python_over_floor": out["python_udp_trigger"]["pps"] / max(floor, 1),
    }
    return out


def table(out: dict[str, Any]) -> str:
    floor = out["floor_no_program"]["pps"]
    lines = [f"{'measure':44} {'value':>14} {'ratio':>10}  goal"]
    for name, label in (("floor_no_program", "veth, no program (floor), pps"),
                        ("xdp_drop", "XDP firewall dropping, pps"),
                        ("xdp_pass", "XDP firewall passing, pps"),
                        ("python_udp_trigger", "Python function on UDP trigger, pps")):  # fmt: skip
        pps = out[name]["pps"]
        lines.append(f"{label:44} {pps:14,.0f} {pps / max(floor, 1):9.2f}x  of floor")
    ratio = out["ratios"]["xdp_drop_over_python"]
    lines.append(f"{'XDP drop / Python':44} {ratio:14.1f} {'':>10}  >= 20")
    ratio = out["ratios"]["xdp_pass_over_python"]
    lines.append(f"{'XDP pass / Python':44} {ratio:14.1f}")
    for name, label, goal in (
        ("instantiate_load_verify_attach_ms", "load+verify+attach, ms", "p50 < 50 ms"),
        ("instantiate_call_ms", "instantiate call (reserve, ledger), ms", ""),
        ("reconfigure_bare_map_update_us", "bare map update (floor), us", ""),
        ("reconfigure_instance_write_us", "rule write via instance, us", ""),
        ("reconfigure_http_api_us", "rule write via HTTP API, us", ""),
    ):
        s = out[name]
        lines.append(f"{label:44} {s['p50']:10.3f} p50 {s['p90']:8.3f} p90  {goal}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short rates, fewer rounds")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("benchmarks/ebpf.py needs root (BPF programs, namespaces)", file=sys.stderr)
        return 2
    out = asyncio.run(run(args.quick))
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(out, indent=2) + "\n")
    print(table(out))
    print(f"\nwritten: {RESULT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


def section(out: dict[str, Any]) -> Section:
    """The run as a section of ``benchmarks/run.py``'s results (and ``docs/benchmarks.md``)."""
    result = Section(
        "ebpf",
        "eBPF VNFs: the XDP firewall's packet rate, instantiation and reconfiguration",
        "the same veth path with no program attached (packets/s); a bare `bpf_map_update_elem` "
        "(rule writes)",
    )
    floor = out["floor_no_program"]["pps"]
    python = out["python_udp_trigger"]["pps"]
    add = result.add
    add(Figure("xdp_drop", "XDP firewall dropping", "/s", out["xdp_drop"]["pps"], floor))
    add(Figure("xdp_pass", "XDP firewall passing", "/s", out["xdp_pass"]["pps"], floor))
    add(
        Figure("python", "the same rule in a Python function on a UDP trigger", "/s", python, floor)
    )
    add(Figure("drop_over_python", "XDP drop rate over the Python function's", "times",
               out["ratios"]["xdp_drop_over_python"], None,
               Goal("at_least", 20.0, "≥ 20 times the user-space function")))  # fmt: skip
    attach = out["instantiate_load_verify_attach_ms"]
    add(Figure("attach.p50", "load + verify + attach, p50", "ms", attach["p50"], None,
               Goal("at_most", 50.0, "p50 < 50 ms")))  # fmt: skip
    add(Figure("attach.p90", "load + verify + attach, p90", "ms", attach["p90"]))
    bare = out["reconfigure_bare_map_update_us"]["p50"] / 1000
    for key, label in (("reconfigure_instance_write_us", "rule write through the instance, p50"),
                       ("reconfigure_http_api_us", "rule write through the HTTP API, p50")):  # fmt: skip
        add(Figure(key, label, "ms", out[key]["p50"] / 1000, bare))
    result.method = (
        f"Packets from one sender process (a small C program, compiled by the run) over a veth "
        f"pair between two network namespaces, {out['seconds_per_rate']:g} s per rate; "
        f"{out['rounds']} instantiations and rule writes. The Python function decides the same "
        "rule behind the platform's UDP trigger; its rate counts events it decided."
    )
    result.detail = out
    return result
