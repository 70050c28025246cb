"""Warm invocations over HTTP: latency at one connection, throughput at several.

The real server (``nfaas up`` in a child process) serves a Python echo and a
Wasm echo at ``/fn/bench/<function>``; the floor is a bare ASGI echo app on the
same server stack and settings (``floors/asgi.py``), in a child process too.
Load comes from a separate process: ``wrk`` when installed (``--latency``, one
thread), else ``loadgen_http.py``. Floor and functions are measured in
interleaved rounds, so that a noisy neighbour hits all of them alike; each
figure is the median over the rounds.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

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
    wait_for_tcp,
)
from benchmarks.server import nfaas_up
from benchmarks.stats import median

OVERHEAD_GOAL = Goal("over_floor_at_most", 1.0, "≤ floor + 1 ms")
THROUGHPUT_GOAL = Goal("at_least", 3000.0, "≥ 3,000/s")
BODY = "ping"
FUNCTIONS = [BenchFunction("py-echo", "process"), BenchFunction("wasm-echo", "wasm")]
#: target name -> function (None: the floor)
TARGETS: dict[str, str | None] = {"floor": None, "process": "py-echo", "wasm": "wasm-echo"}

WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body = "{BODY}"
wrk.headers["Content-Type"] = "application/octet-stream"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"mean":%f,"max":%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
""".replace("{BODY}", BODY)


@dataclass(frozen=True, slots=True)
class LoadResult:
    connections: int
    requests: int
    errors: int
    duration_s: float
    throughput: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    #: CPU time the serving process spent per request (its workers not included), µs
    server_cpu_us: float


def load_tool() -> str:
    return "wrk" if shutil.which("wrk") else "python"


def _from_report(connections: int, report: dict[str, float], cpu_s: float) -> LoadResult:
    ms = 1000.0
    duration = report["duration_us"] / 1e6
    errors = sum(int(report[k]) for k in ("connect", "read", "write", "status", "timeout"))
    ok = int(report["requests"]) - int(report["status"])
    return LoadResult(
        connections=connections,
        requests=int(report["requests"]),
        errors=errors,
        duration_s=duration,
        throughput=ok / duration if duration > 0 else math.nan,
        p50_ms=report["p50"] / ms,
        p90_ms=report["p90"] / ms,
        p99_ms=report["p99"] / ms,
        mean_ms=report["mean"] / ms,
        server_cpu_us=cpu_s / report["requests"] * 1e6 if report["requests"] else math.nan,
    )


def _wrk(url: str, connections: int, seconds: int, script: Path) -> dict[str, float]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s"]
    command += ["--latency", "-s", str(script), url]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 30, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchmarkError(f"wrk did not finish within {seconds + 30} s") from exc
    for line in done.stdout.splitlines():
        if line.startswith('{"requests"'):
            report: dict[str, float] = json.loads(line)
            return report
    raise BenchmarkError(f"wrk printed no report ({done.returncode}): {done.stderr[-1000:]}")


def _load(url: str, connections: int, seconds: int, tool: str) -> dict[str, float]:
    if tool == "wrk":
        with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
            script.write(WRK_SCRIPT)
            script.flush()
            return _wrk(url, connections, seconds, Path(script.name))
    command = [*python_script("loadgen_http.py"), url, "--connections", str(connections)]
    command += ["--duration", str(seconds), "--warmup", "0", "--body", BODY]
    report: dict[str, float] = run_json(command, timeout_s=seconds + 60)
    return report


def drive(
    url: str, connections: int, duration_s: int, warmup_s: int, tool: str, server_pid: int
) -> LoadResult:
    """Load ``url`` with ``connections`` keep-alive connections after an unmeasured warm-up."""
    if warmup_s:
        _load(url, connections, warmup_s, tool)
    cpu_before = cpu_seconds(server_pid)
    report = _load(url, connections, duration_s, tool)
    return _from_report(connections, report, cpu_seconds(server_pid) - cpu_before)


def _median_result(results: Sequence[LoadResult]) -> LoadResult:
    return LoadResult(
        connections=results[0].connections,
        requests=sum(r.requests for r in results),
        errors=sum(r.errors for r in results),
        duration_s=sum(r.duration_s for r in results),
        throughput=median([r.throughput for r in results]),
        p50_ms=median([r.p50_ms for r in results]),
        p90_ms=median([r.p90_ms for r in results]),
        p99_ms=median([r.p99_ms for r in results]),
        mean_ms=median([r.mean_ms for r in results]),
        server_cpu_us=median([r.server_cpu_us for r in results]),
    )


def run(*, rounds: int, duration_s: int, warmup_s: int, connections: int) -> Section:
    tool = load_tool()
    section = Section(
        "http",
        "Warm invocation over HTTP",
        "bare ASGI echo app, uvicorn + uvloop + httptools with nfaas's settings",
    )
    measured: dict[tuple[str, int], list[LoadResult]] = {}
    with tempfile.TemporaryDirectory(prefix="nfaas-bench-") as tmp, nfaas_up(FUNCTIONS) as server:
        floor_port = free_port()
        command = [*python_script("floors/asgi.py"), str(floor_port)]
        with background(command, log=Path(tmp) / "floor.log") as floor:
            wait_for_tcp(floor_port, floor, 30)
            urls = {
                name: server.url(fn) if fn else f"http://{LOOPBACK}:{floor_port}/fn/bench/echo"
                for name, fn in TARGETS.items()
            }
            pids = {name: server.pid if fn else floor.pid for name, fn in TARGETS.items()}
            for _ in range(rounds):
                for conns in (1, connections):
                    for name, url in urls.items():
                        result = drive(url, conns, duration_s, warmup_s, tool, pids[name])
                        measured.setdefault((name, conns), []).append(result)
    summary = {key: _median_result(results) for key, results in measured.items()}
    floor1, floor_n = summary[("floor", 1)], summary[("floor", connections)]
    for backend in ("process", "wasm"):
        one, many = summary[(backend, 1)], summary[(backend, connections)]
        section.add(
            Figure(f"{backend}.c1.p50", f"{backend}: 1 connection, p50", "ms",
                   one.p50_ms, floor1.p50_ms, OVERHEAD_GOAL)
        )  # fmt: skip
        section.add(
            Figure(f"{backend}.c1.p99", f"{backend}: 1 connection, p99", "ms",
                   one.p99_ms, floor1.p99_ms)
        )  # fmt: skip
        section.add(
            Figure(f"{backend}.cN.throughput", f"{backend}: {connections} connections, throughput",
                   "/s", many.throughput, floor_n.throughput, THROUGHPUT_GOAL)
        )  # fmt: skip
        section.add(
            Figure(f"{backend}.cN.p50", f"{backend}: {connections} connections, p50", "ms",
                   many.p50_ms, floor_n.p50_ms)
        )  # fmt: skip
        section.add(
            Figure(f"{backend}.cN.p99", f"{backend}: {connections} connections, p99", "ms",
                   many.p99_ms, floor_n.p99_ms)
        )  # fmt: skip
    section.method = (
        f"load tool: {'wrk (Debian), one thread, --latency' if tool == 'wrk' else 'loadgen_http.py (Python, wrk not found)'}; "
        f"{rounds} interleaved round(s) of {duration_s} s per target and concurrency after "
        f"{warmup_s} s of warm-up; POST of {len(BODY)} bytes echoed back; medians over rounds."
    )
    section.detail = {
        "tool": tool,
        "connections": connections,
        "rounds": {
            f"{name}/c{conns}": [asdict(r) for r in results]
            for (name, conns), results in measured.items()
        },
        "errors": {f"{n}/c{c}": r.errors for (n, c), r in summary.items()},
        "server_cpu_us_per_request": {
            f"{n}/c{c}": r.server_cpu_us for (n, c), r in summary.items()
        },
    }
    return section
