"""Child processes of the benchmarks: bounded, on loopback, always killed in the end."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
LOOPBACK = "127.0.0.1"
#: the environment the zygote gives its runtime (nfaas.sandboxes.process.DEFAULT_ENV)
ZYGOTE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


class BenchmarkError(RuntimeError):
    """A benchmark could not be taken (a server did not start, a tool failed)."""


def python_script(name: str) -> list[str]:
    """The command running ``benchmarks/<name>`` with this interpreter."""
    return [sys.executable, "-B", str(HERE / name)]


def run_json(command: Sequence[str], *, timeout_s: float, env: dict[str, str] | None = None) -> Any:
    """Run ``command`` to its end (killed after ``timeout_s``) and parse the JSON it prints."""
    try:
        done = subprocess.run(
            list(command),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            cwd=ROOT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchmarkError(f"{command[:3]} did not finish within {timeout_s:g} s") from exc
    if done.returncode != 0:
        raise BenchmarkError(
            f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}"
        )
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise BenchmarkError(f"{' '.join(command)} printed no JSON: {done.stdout[-2000:]}")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def wait_for_tcp(port: int, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchmarkError(f"{process.args!r} exited with {process.returncode} on start")
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.2):
            return
        time.sleep(0.05)
    raise BenchmarkError(f"nothing listened on port {port} within {timeout_s:g} s")


@contextlib.contextmanager
def background(
    command: Sequence[str], *, log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process for the block's duration: SIGTERM at the end, SIGKILL if it lingers."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            start_new_session=True,  # its own group: the kill reaches its zygote and workers
        )
        try:
            yield process
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM (nfaas shuts down in order, zygote included), SIGKILL to its group past the grace."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace_s)
        return
    except subprocess.TimeoutExpired:
        pass
    # Not yet reaped, so the group id is still its own: whatever is in it goes too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(5)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads, not its children)."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rpartition(b")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # proc(5) 14, 15
