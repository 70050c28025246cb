"""Fixtures for eBPF tests: a veth pair between two fresh network namespaces.

Every test gets namespaces and interfaces with names of its own, removed in a
finalizer whether the test passed or not (deleting a namespace deletes its
end of the veth, and with it the pair).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nfaas.ebpf.compile import compile_bpf
from nfaas.ebpf.netns import run_in_netns

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
EXAMPLE = EXAMPLES / "ebpf-firewall" / "Files" / "firewall" / "firewall.bpf.c"
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
    #: None: the node's own namespace (where the platform's triggers listen)
    receiver_ns: str | None
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
        where = ["-n", self.receiver_ns] if self.receiver_ns else []
        out = ip(*where, "-d", "link", "show", "dev", self.receiver)
        return "\n".join(line for line in out.splitlines() if "xdp" in line.lower())

    def tc_filters(self, side: str, direction: str) -> str:
        """What ``tc filter show`` lists on one end's clsact hook ('' if nothing)."""
        ns, dev = (
            (self.sender_ns, self.sender) if side == "sender" else (self.receiver_ns, self.receiver)
        )
        where = ["-n", ns] if ns else []
        done = subprocess.run(
            ["tc", *where, "filter", "show", "dev", dev, direction],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        return done.stdout.strip()

    def qdiscs(self, side: str) -> str:
        ns, dev = (
            (self.sender_ns, self.sender) if side == "sender" else (self.receiver_ns, self.receiver)
        )
        where = ["-n", ns] if ns else []
        return subprocess.run(
            ["tc", *where, "qdisc", "show", "dev", dev],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip


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


@pytest.fixture
def node_veth() -> Iterator[VethPair]:
    """A veth pair whose receiving end is in the node's own namespace, with an address
    of its own (10.214.x.2/30), so that the platform's UDP triggers can listen on it."""
    require_ebpf()
    serial = next(_serial)
    n = f"{os.getpid() % 100000}y{serial}"
    third = (os.getpid() + serial) % 250
    fourth = 4 * (serial % 60)
    pair = VethPair(
        sender_ns=f"nfaas-s{n}",
        receiver_ns=None,
        sender=f"nfs{n}",
        receiver=f"nfr{n}",
        sender_ip=f"10.214.{third}.{fourth + 1}",
        receiver_ip=f"10.214.{third}.{fourth + 2}",
    )
    made_ns = made_link = False
    try:
        ip("netns", "add", pair.sender_ns)
        made_ns = True
        ip("link", "add", pair.receiver, "type", "veth", "peer", "name", pair.sender,
           "netns", pair.sender_ns)  # fmt: skip
        made_link = True
        ip("-n", pair.sender_ns, "addr", "add", f"{pair.sender_ip}/30", "dev", pair.sender)
        ip("-n", pair.sender_ns, "link", "set", "dev", pair.sender, "up")
        ip("addr", "add", f"{pair.receiver_ip}/30", "dev", pair.receiver)
        ip("link", "set", "dev", pair.receiver, "up")
        yield pair
    finally:
        if made_link:
            subprocess.run(["ip", "link", "del", pair.receiver], capture_output=True, timeout=10)
        if made_ns:
            subprocess.run(["ip", "netns", "del", pair.sender_ns], capture_output=True, timeout=10)


def bpftool_ids(kind: str) -> set[int]:
    out = subprocess.run(
        ["bpftool", "-j", kind, "show"], check=True, capture_output=True, text=True, timeout=10
    ).stdout
    return {entry["id"] for entry in json.loads(out or "[]")}


def exists(kind: str, ident: int) -> bool:
    return (
        subprocess.run(
            ["bpftool", kind, "show", "id", str(ident)], capture_output=True, timeout=10
        ).returncode
        == 0
    )


def gone(kind: str, ident: int) -> bool:
    # the kernel frees the id when the last reference goes; allow it a moment
    deadline = time.monotonic() + 2.0
    while exists(kind, ident):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def send_and_count(
    pair: VethPair, port: int, count: int = 20, *, sport: int = 0, payload: bytes = b"probe"
) -> int:
    """Send ``count`` datagrams to ``port`` on the receiver; how many arrived."""
    rx = pair.udp_socket("receiver", port)
    tx = pair.udp_socket("sender", sport)
    try:
        rx.settimeout(0.3)
        for i in range(count):
            tx.sendto(payload + b" %d" % i, (pair.receiver_ip, port))
        got = 0
        while got < count:
            try:
                rx.recv(2048)
            except TimeoutError:
                break
            got += 1
        return got
    finally:
        rx.close()
        tx.close()


def firewall_object() -> bytes:
    """The example firewall compiled (for tests that need an object outside a fixture)."""
    out = Path(tempfile.mkdtemp(prefix="nfaas-fw-")) / "firewall.bpf.o"
    try:
        asyncio.run(compile_bpf(EXAMPLE, out)) if False else _compile_sync(out)
        return out.read_bytes()
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


def _compile_sync(out: Path) -> None:
    from nfaas.ebpf.compile import compile_command, find_clang

    subprocess.run(compile_command(EXAMPLE, out, clang=find_clang()), check=True, timeout=60)
