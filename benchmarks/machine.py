"""What the figures were measured on: cores, CPU model, kernel, load, versions."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any


def _cpuinfo() -> tuple[str, bool]:
    model, virtual = "unknown", False
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name") and model == "unknown":
                    model = line.partition(":")[2].strip()
                elif line.startswith("flags") and " hypervisor" in line:
                    virtual = True
    except OSError:
        pass
    return model, virtual


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / (1 << 20), 1)
    except OSError:
        pass
    return None


def _wrk_version() -> str | None:
    if shutil.which("wrk") is None:
        return None
    done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    words = (done.stdout or done.stderr).split()
    return words[1] if len(words) > 1 else "unknown"  # "wrk debian/4.1.0-3+b2 [epoll] ..."


def _dist(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def describe() -> dict[str, Any]:
    model, virtual = _cpuinfo()
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "virtualised": virtual,
        "memory_gib": _memory_gib(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "load_average_at_start": load_average(),
        "versions": {
            "wrk": _wrk_version(),
            "uvicorn": _dist("uvicorn"),
            "uvloop": _dist("uvloop"),
            "httptools": _dist("httptools"),
            "wasmtime": _dist("wasmtime"),
            "fastapi": _dist("fastapi"),
        },
    }
