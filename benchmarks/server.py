"""The real server, ``nfaas up``, in a child process with the benchmark package onboarded."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.functions import APP, BenchFunction, write_package_source
from benchmarks.processes import LOOPBACK, BenchmarkError, background, free_port, wait_for_tcp

START_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class RunningServer:
    port: int
    pid: int
    log: Path

    def url(self, function: str) -> str:
        return f"http://{LOOPBACK}:{self.port}/fn/{APP}/{function}"


@contextlib.contextmanager
def nfaas_up(functions: list[BenchFunction]) -> Iterator[RunningServer]:
    """``nfaas up`` on a free port with a temporary data folder, serving ``functions``."""
    with tempfile.TemporaryDirectory(prefix="nfaas-bench-") as tmp:
        root = Path(tmp)
        source = write_package_source(root / "src", functions)
        port = free_port()
        command = [sys.executable, "-m", "nfaas", "up", "--port", str(port)]
        command += ["--data-dir", str(root / "data"), "--onboard", str(source)]
        command += ["--log-level", "warning"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("NFAAS_")}
        log = root / "nfaas.log"
        with background(command, log=log, env=env) as process:
            try:
                wait_for_tcp(port, process, START_TIMEOUT_S)
                server = RunningServer(port, process.pid, log)
                for fn in functions:
                    _wait_until_served(server.url(fn.name))
            except BenchmarkError as exc:
                raise BenchmarkError(f"{exc}\n{log.read_text(errors='replace')[-3000:]}") from exc
            yield server
        _report_trouble(log)


def _report_trouble(log: Path) -> None:
    """Say so when the server logged errors: the figures may not be what they seem."""
    text = log.read_text(errors="replace")
    if "Traceback" in text or " ERROR " in text or " WARNING " in text:
        print(f"warning: nfaas up logged trouble:\n{text[-3000:]}", file=sys.stderr)


def _wait_until_served(url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(url, data=b"ping", method="POST")
            with urllib.request.urlopen(request, timeout=10) as answer:
                if answer.status == 200 and answer.read() == b"ping":
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise BenchmarkError(f"{url} did not echo within {START_TIMEOUT_S:g} s: {last}")
