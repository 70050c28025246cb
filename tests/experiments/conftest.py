"""What every experiment test needs from the machine: mosquitto, and nothing left behind."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from nfaas.errors import ExperimentError
from nfaas.experiments.broker import mosquitto_binary
from tests.requirements import require


def _mosquitto() -> tuple[bool, str]:
    try:
        mosquitto_binary()
    except ExperimentError as exc:
        return False, exc.detail
    return True, "available"


def brokers_running() -> list[str]:
    """mosquitto processes started from an experiment's folder or container."""
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    return [
        line
        for line in out.splitlines()
        if ("mosquitto" in line and "nfaas-broker-" in line)
        or line.endswith("/code/mosquitto.conf")
    ]


def broker_containers() -> list[str]:
    out = subprocess.run(["runc", "list", "-q"], capture_output=True, text=True, check=False).stdout
    return [name for name in out.split() if name.startswith("nfaas-broker-")]


@pytest.fixture(autouse=True)
def _needs_mosquitto_and_leaves_nothing() -> Iterator[None]:
    require(_mosquitto(), "the experiments")
    yield
    assert brokers_running() == []
    assert broker_containers() == []


def child_pids_named(prefix: str) -> list[int]:
    """This process's children whose command starts with ``prefix`` (a QEMU left running)."""
    from nfaas.experiments.footprint_probes import child_pids

    found = []
    for pid in child_pids():
        try:
            with open(f"/proc/{pid}/comm") as comm:
                if comm.read().startswith(prefix):
                    found.append(pid)
        except OSError:
            continue
    return found
