"""Warm invocations over UDP: latency with one datagram in flight, throughput with a window.

``nfaas up`` in a child process binds a Python echo and a Wasm echo to UDP
ports; the floor is a bare asyncio UDP echo server on uvloop
(``floors/udp_echo.py``). Load comes from ``loadgen_udp.py`` in a separate
process, on loopback, bounded in count and time. Rounds are interleaved across
floor and functions; each figure is the median over the rounds.
"""

from __future__ import annotations

import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.figures import Figure, Goal, Section
from benchmarks.functions import BenchFunction
from benchmarks.processes import (
    LOOPBACK,
    BenchmarkError,
    background,
    cpu_seconds,
    free_port,
    python_script,
    run_json,
)
from benchmarks.server import nfaas_up
from benchmarks.stats import median

THROUGHPUT_GOAL = Goal("at_least", 10_000.0, "≥ 10,000/s")
PAYLOAD_BYTES = 32


def _load(port: int, window: int, duration_s: float) -> dict[str, Any]:
    command = [*python_script("loadgen_udp.py"), "--port", str(port), "--window", str(window)]
    command += ["--duration", str(duration_s), "--warmup", "0"]
    command += ["--payload", str(PAYLOAD_BYTES)]
    result: dict[str, Any] = run_json(command, timeout_s=duration_s + 30)
    return result


def drive(
    port: int, window: int, duration_s: float, warmup_s: float, server_pid: int
) -> dict[str, Any]:
    """A measured run after an unmeasured warm-up, with the server's CPU time per datagram."""
    if warmup_s:
        _load(port, window, warmup_s)
    cpu_before = cpu_seconds(server_pid)
    result = _load(port, window, duration_s)
    cpu = cpu_seconds(server_pid) - cpu_before
    result["server_cpu_us"] = cpu / result["received"] * 1e6 if result["received"] else None
    return result


def _wait_for_echo(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        while time.monotonic() < deadline:
            s.sendto(b"\0" * 8 + b"hello", (LOOPBACK, port))
            try:
                if s.recv(64).endswith(b"hello"):
                    return
            except OSError:
                time.sleep(0.1)
    raise BenchmarkError(f"nothing echoed on udp port {port} within {timeout_s:g} s")


def _median_of(results: Sequence[dict[str, Any]], field: str) -> float:
    if field == "throughput":
        return median([r["throughput"] for r in results])
    return median([r["latency_ms"][field] for r in results])


def run(*, rounds: int, duration_s: float, warmup_s: float, window: int) -> Section:
    section = Section(
        "udp",
        "Warm invocation over UDP",
        "bare asyncio UDP echo server on uvloop",
    )
    ports = {"floor": free_port(socket.SOCK_DGRAM)}
    ports["process"] = free_port(socket.SOCK_DGRAM)
    ports["wasm"] = free_port(socket.SOCK_DGRAM)
    functions = [
        BenchFunction("py-udp", "process", udp_port=ports["process"]),
        BenchFunction("wasm-udp", "wasm", udp_port=ports["wasm"]),
    ]
    measured: dict[tuple[str, int], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="nfaas-bench-") as tmp, nfaas_up(functions) as server:
        command = [*python_script("floors/udp_echo.py"), str(ports["floor"])]
        with background(command, log=Path(tmp) / "floor.log") as floor:
            pids = {"floor": floor.pid, "process": server.pid, "wasm": server.pid}
            for port in ports.values():
                _wait_for_echo(port)
            for _ in range(rounds):
                for w in (1, window):
                    for name, port in ports.items():
                        measured.setdefault((name, w), []).append(
                            drive(port, w, duration_s, warmup_s, pids[name])
                        )
    floor1, floor_w = measured[("floor", 1)], measured[("floor", window)]
    for backend in ("process", "wasm"):
        one, many = measured[(backend, 1)], measured[(backend, window)]
        for stat in ("p50", "p99"):
            section.add(
                Figure(f"{backend}.w1.{stat}", f"{backend}: 1 in flight, {stat}", "ms",
                       _median_of(one, stat), _median_of(floor1, stat))
            )  # fmt: skip
        section.add(
            Figure(f"{backend}.wN.throughput", f"{backend}: {window} in flight, throughput", "/s",
                   _median_of(many, "throughput"), _median_of(floor_w, "throughput"),
                   THROUGHPUT_GOAL)
        )  # fmt: skip
        for stat in ("p50", "p99"):
            section.add(
                Figure(f"{backend}.wN.{stat}", f"{backend}: {window} in flight, {stat}", "ms",
                       _median_of(many, stat), _median_of(floor_w, stat))
            )  # fmt: skip
    section.method = (
        f"load tool: loadgen_udp.py (Python, uvloop) in its own process, {PAYLOAD_BYTES}-byte "
        f"datagrams; {rounds} interleaved round(s) of {duration_s:g} s per target and window "
        f"after {warmup_s:g} s of warm-up; a datagram unanswered for 0.5 s counts as lost; "
        f"medians over rounds."
    )
    section.detail = {
        "window": window,
        "rounds": {f"{n}/w{w}": results for (n, w), results in measured.items()},
        "lost": {f"{n}/w{w}": sum(r["lost"] for r in rs) for (n, w), rs in measured.items()},
        "server_cpu_us_per_datagram": {
            f"{n}/w{w}": median([r["server_cpu_us"] for r in rs if r["server_cpu_us"]])
            for (n, w), rs in measured.items()
        },
    }
    return section
