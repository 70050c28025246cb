"""Fixtures for eBPF tests: a veth pair between two fresh network namespaces.

Every test gets namespaces and interfaces with names of its own, removed in a
finalizer whether the test passed or not (deleting a namespace deletes its
end of the veth, and with it the pair).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nfaas.ebpf.compile import compile_bpf
from nfaas.ebpf.netns import run_in_netns

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ebpf-firewall" / "firewall.bpf.c"
_serial = itertools.count()


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root to load BPF programs and make namespaces"
    for tool in ("ip", "clang", "bpftool"):
        if shutil.which(tool) is None:
            return f"needs {tool} (scripts/setup installs it)"
    try:
        from nfaas.ebpf.libbpf import libbpf

        libbpf()
    except OSError as exc:
        return f"needs libbpf.so.1: {exc}"
    return None


def require_ebpf() -> None:
    reason = _missing()
    if reason:
        # scripts/setup installs the tools, and the platform runs as root: missing is broken
        pytest.fail(f"eBPF tests cannot run: {reason}", pytrace=False)


def ip(*args: str) -> str:
    return subprocess.run(
        ["ip", *args], check=True, capture_output=True, text=True, timeout=10
    ).stdout


@dataclass(frozen=True)
class VethPair:
    """``sender`` (netns ``sender_ns``, address ``sender_ip``) wired to ``receiver``."""

    sender_ns: str
    receiver_ns: str
    sender: str
    receiver: str
    sender_ip: str
    receiver_ip: str

    def udp_socket(self, side: str, port: int = 0) -> socket.socket:
        """A UDP socket made inside one side's namespace, bound to its address."""
        ns, addr = (
            (self.sender_ns, self.sender_ip)
            if side == "sender"
            else (self.receiver_ns, self.receiver_ip)
        )

        def make() -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((addr, port))
            return sock

        return run_in_netns(ns, make)

    def xdp_on_receiver(self) -> str:
        """What ``ip link show`` says about XDP on the receiving end ('' if nothing)."""
        out = ip("-n", self.receiver_ns, "-d", "link", "show", "dev", self.receiver)
        return "\n".join(line for line in out.splitlines() if "xdp" in line.lower())


@pytest.fixture
def veth_pair() -> Iterator[VethPair]:
    require_ebpf()
    n = f"{os.getpid() % 100000}x{next(_serial)}"
    pair = VethPair(
        sender_ns=f"nfaas-s{n}",
        receiver_ns=f"nfaas-r{n}",
        sender=f"nfs{n}",
        receiver=f"nfr{n}",
        sender_ip="10.213.0.1",
        receiver_ip="10.213.0.2",
    )
    made: list[str] = []
    try:
        for ns in (pair.sender_ns, pair.receiver_ns):
            ip("netns", "add", ns)
            made.append(ns)
        ip("link", "add", pair.sender, "netns", pair.sender_ns, "type", "veth",
           "peer", "name", pair.receiver, "netns", pair.receiver_ns)  # fmt: skip
        for ns, dev, addr in (
            (pair.sender_ns, pair.sender, pair.sender_ip),
            (pair.receiver_ns, pair.receiver, pair.receiver_ip),
        ):
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            ip("-n", ns, "link", "set", "dev", dev, "up")
        yield pair
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


@pytest.fixture(scope="session")
def firewall_elf(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The example firewall, compiled once per session."""
    require_ebpf()
    out = tmp_path_factory.mktemp("ebpf") / "firewall.bpf.o"
    asyncio.run(compile_bpf(EXAMPLE, out))
    return out.read_bytes()
