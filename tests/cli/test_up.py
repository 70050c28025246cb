"""The user's path end to end: `nfaas up` with the example application, the CLI, Ctrl-C.

Real processes and real sandboxes: the platform runs as a subprocess with the
process and wasm backends, and every command is the installed CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "iot-telemetry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def example_on_free_ports(tmp: Path) -> tuple[Path, int, int]:
    """The example application with its UDP ports moved to free ones, so that the test
    runs beside a platform already serving the example on 9001 and 9002."""
    source = tmp / "example"
    shutil.copytree(EXAMPLE, source)
    ports = []
    for name, fixed in (("ingest", 9001), ("classify", 9002)):
        descriptor = source / "Definitions" / f"{name}.yaml"
        port = free_udp_port()
        descriptor.write_text(descriptor.read_text().replace(f"port: {fixed}", f"port: {port}"))
        ports.append(port)
    return source, ports[0], ports[1]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    def __init__(self, tmp: Path) -> None:
        self.example, self.ingest_port, self.classify_port = example_on_free_ports(tmp)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "NFAAS_DATA_DIR": str(tmp / "data"),
            "HOME": str(tmp),
            "NFAAS_URL": "",
            "NFAAS_TOKEN": "",
        }
        self.log = tmp / "up.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nfaas",
                "up",
                "--port",
                str(self.port),
                "--onboard",
                str(self.example),
            ],
            env=self.env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).json()["status"] == "running":
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"nfaas up did not come up:\n{self.log.read_text()}")

    def cli(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "nfaas", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if ok:
            assert done.returncode == 0, done.stderr + done.stdout
        return done


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = Node(tmp_path)
    node.start()
    try:
        yield node
    finally:
        if node.proc is not None and node.proc.poll() is None:
            node.proc.kill()
            node.proc.wait()


def test_the_example_application_end_to_end(node: Node, tmp_path: Path) -> None:
    # No flags, no environment: the CLI finds the local platform and its operator token.
    listing = node.cli("ls", "--json")
    functions = {f"{f['app']}/{f['name']}" for f in json.loads(listing.stdout)}
    assert functions == {"iot-telemetry/ingest", "iot-telemetry/summary", "iot-telemetry/classify"}

    # HTTP: the custom route and /fn, to a Python function and to a Wasm function.
    r = httpx.post(f"{node.url}/telemetry", content=b'{"device": "t-1", "value": 21.5}')
    assert r.status_code == 200 and r.json()["ok"] is True
    r = httpx.post(f"{node.url}/fn/iot-telemetry/classify", content=b"temp=87")
    assert (r.status_code, r.content) == (200, b"alarm")
    assert node.cli("invoke", "iot-telemetry/classify", "--data", "temp=55").stdout == "warn"
    summary = httpx.get(f"{node.url}/fn/iot-telemetry/summary")
    assert summary.status_code == 200 and summary.json()["function"] == "summary"

    # UDP port trigger (EVE025 Fig. 7.2.2.2-2: port 9001 -> ingest).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(10)
        udp.sendto(b"device=t-2 value=3", ("127.0.0.1", node.ingest_port))
        answer, _ = udp.recvfrom(65536)
    assert json.loads(answer)["ok"] is True

    instances = json.loads(node.cli("instances", "--json").stdout)
    assert {i["backend"] for i in instances} == {"process", "wasm"}
    metrics = json.loads(node.cli("metrics", "--json").stdout)["functions"]
    assert metrics["iot-telemetry/classify@1.0.0"]["invocations"] == 2
    assert metrics["iot-telemetry/ingest@1.0.0"]["cold_starts"] >= 1
    assert "nfaas_invocations_total" in node.cli("metrics", "--prometheus").stdout

    # The operator's resources: runtimes, pools, node capacity.
    node.cli(
        "runtimes", "add", "python:3.11-slim", "--backend", "process", "--sandbox-memory-mb", "8"
    )
    node.cli("runtimes", "set", "python:3.11-slim", "--description", "a second Python")
    shown = json.loads(node.cli("runtimes", "show", "python:3.11-slim", "--json").stdout)
    assert shown[0]["description"] == "a second Python" and shown[0]["sandbox_memory_mb"] == 8
    node.cli("pools", "set", "slim", "1", "--runtime", "python:3.11-slim")
    pools = {p["id"]: p for p in json.loads(node.cli("pools", "--json").stdout)}
    assert pools["slim"]["size"] == 1 and pools["slim"]["runtime"] == "python:3.11-slim"
    node.cli("runtimes", "rm", "python:3.11-slim")
    assert "slim" not in {p["id"] for p in json.loads(node.cli("pools", "--json").stdout)}
    capacity = json.loads(node.cli("node", "--json").stdout)[0]
    assert capacity["memory_reserved_mb"] > 0

    # A tenant token sees nothing of the operator's application.
    token = node.cli("token", "create", "acme").stdout.strip()
    assert json.loads(node.cli("ls", "--json", "--token", token).stdout) == []

    # Errors are precise and exit non-zero.
    failed = node.cli("invoke", "iot-telemetry/nope", ok=False)
    assert failed.returncode == 1 and "no enabled function iot-telemetry/nope" in failed.stderr
    csar = tmp_path / "iot.csar"
    node.cli("package", "build", str(EXAMPLE), "-o", str(csar))
    assert (
        "valid application package iot-telemetry 1.0.0"
        in node.cli("package", "verify", str(csar)).stdout
    )
    dup = node.cli("onboard", str(csar), ok=False)
    assert dup.returncode == 1 and "already onboarded" in dup.stderr


def test_ctrl_c_shuts_down_cleanly_and_state_survives(node: Node) -> None:
    assert (
        httpx.post(f"{node.url}/fn/iot-telemetry/ingest", content=b"device=a value=1").status_code
        == 200
    )
    assert node.proc is not None
    children = descendants(node.proc.pid)
    assert children, "the process backend runs workers under the platform"
    node.proc.send_signal(signal.SIGINT)
    assert node.proc.wait(timeout=20) == 0
    log = node.log.read_text()
    assert "shutting down" in log and "nfaas stopped" in log
    time.sleep(0.2)
    leftovers = {pid for pid in children if Path(f"/proc/{pid}").exists()}
    assert not leftovers, f"processes left behind: {leftovers}"

    node.start()
    r = httpx.post(f"{node.url}/fn/iot-telemetry/classify", content=b"v=10")
    assert (r.status_code, r.content) == (200, b"ok")
    assert "iot-telemetry/ingest" in node.cli("ls").stdout


def test_sigterm_with_an_idle_connection_open_still_shuts_down_in_order(node: Node) -> None:
    """systemd and container runtimes stop services with SIGTERM; an idle client must not block it."""
    assert node.proc is not None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(10)
        udp.sendto(b"device=t value=1", ("127.0.0.1", node.ingest_port))
        udp.recvfrom(65536)
    children = descendants(node.proc.pid)
    with socket.create_connection(("127.0.0.1", node.port), timeout=5):
        node.proc.send_signal(signal.SIGTERM)
        assert node.proc.wait(timeout=20) == 0
    assert "nfaas stopped" in node.log.read_text()
    time.sleep(0.2)
    assert not {pid for pid in children if Path(f"/proc/{pid}").exists()}
