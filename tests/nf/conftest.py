"""Fixtures of the NF tests: the example NFs as modules, and a small network of namespaces."""

from __future__ import annotations

import importlib.util
import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from tests.requirements import require

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
_serial = itertools.count()


def load_example(relative: str) -> ModuleType:
    """An example function's module, imported as the python sandbox would (no bytecode left)."""
    path = EXAMPLES / relative
    spec = importlib.util.spec_from_file_location(f"example_nf_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    written, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = written
    return module


@pytest.fixture(scope="session")
def firewall_module() -> ModuleType:
    return load_example("nf-firewall/Files/firewall/firewall.py")


@pytest.fixture(scope="session")
def lb_module() -> ModuleType:
    return load_example("nf-lb/Files/lb/lb.py")


def ip(*args: str) -> str:
    return subprocess.run(
        ["ip", *args], check=True, capture_output=True, text=True, timeout=10
    ).stdout


def _namespaces_available() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "needs root to make network namespaces and packet sockets"
    if shutil.which("ip") is None:
        return False, "needs ip (iproute2)"
    return True, ""


@dataclass(frozen=True)
class Wire:
    """``client`` (ns ``client_ns``) -- NF (ns ``nf_ns``: ``nf_in``, ``nf_out``) -- ``server``.

    The NF's namespace holds no addresses: the NF moves frames between its two
    interfaces itself, like a bump in the wire.
    """

    client_ns: str
    nf_ns: str
    server_ns: str
    nf_in: str
    nf_out: str
    client_ip: str = "10.77.0.1"
    server_ip: str = "10.77.0.2"


def _mac(ns: str, dev: str) -> str:
    out = ip("-n", ns, "-o", "link", "show", "dev", dev)
    return out.split("link/ether ")[1].split()[0]


@pytest.fixture
def wire() -> Iterator[Wire]:
    require(_namespaces_available(), "AF_PACKET tests in network namespaces")
    n = f"{os.getpid() % 100000}n{next(_serial)}"
    w = Wire(f"nfc{n}", f"nfn{n}", f"nfs{n}", f"nfi{n}", f"nfo{n}")
    made: list[str] = []
    try:
        for ns in (w.client_ns, w.nf_ns, w.server_ns):
            ip("netns", "add", ns)
            made.append(ns)
        ip(
            "link",
            "add",
            f"c{n}",
            "netns",
            w.client_ns,
            "type",
            "veth",
            "peer",
            "name",
            w.nf_in,
            "netns",
            w.nf_ns,
        )
        ip(
            "link",
            "add",
            f"s{n}",
            "netns",
            w.server_ns,
            "type",
            "veth",
            "peer",
            "name",
            w.nf_out,
            "netns",
            w.nf_ns,
        )
        for ns, dev, addr in (
            (w.client_ns, f"c{n}", w.client_ip),
            (w.server_ns, f"s{n}", w.server_ip),
        ):
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            ip("-n", ns, "link", "set", "dev", dev, "up")
        for dev in (w.nf_in, w.nf_out):
            ip("-n", w.nf_ns, "link", "set", "dev", dev, "up", "promisc", "on")
        # static neighbours: no ARP has to cross the NF, which forwards one way only
        ip(
            "-n",
            w.client_ns,
            "neigh",
            "add",
            w.server_ip,
            "lladdr",
            _mac(w.server_ns, f"s{n}"),
            "dev",
            f"c{n}",
        )
        ip(
            "-n",
            w.server_ns,
            "neigh",
            "add",
            w.client_ip,
            "lladdr",
            _mac(w.client_ns, f"c{n}"),
            "dev",
            f"s{n}",
        )
        yield w
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
