"""AF_PACKET ports on real interfaces: the firewall as a bump in the wire between namespaces.

client --veth-- [nf_in  NF  nf_out] --veth-- server

The NF's namespace has no addresses and no forwarding: a datagram reaches
the server only if the NF read its frame from one interface and wrote it to
the other.
"""

from __future__ import annotations

import socket
import threading
import time
from types import ModuleType

import pytest

from nfaas.ebpf.netns import run_in_netns
from nfaas.errors import CaptureError
from nfaas.nf.io.afpacket import PacketSocket
from tests.nf.conftest import Wire
from tests.nf.kit import checksums_right

pytestmark = pytest.mark.timeout(30)
ALLOWED, DENIED = 7001, 7002


def udp_socket(ns: str, address: str, port: int = 0) -> socket.socket:
    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((address, port))
        return sock

    return run_in_netns(ns, make)


def forward(wire: Wire, firewall: ModuleType, stop: threading.Event, seen: list[bytes]) -> object:
    nf = firewall.build([{"action": "allow", "proto": "udp", "dport": ALLOWED}], "deny")
    instance = nf.instance()
    with (
        PacketSocket(wire.nf_in, netns=wire.nf_ns) as rx,
        PacketSocket(wire.nf_out, netns=wire.nf_ns) as tx,
    ):
        while not stop.is_set():
            batch = rx.read(64, timeout_s=0.05)
            if len(batch):
                out = instance.process(batch).get("out")
                if out is not None:
                    seen.extend(out.frames())
                    tx.write(out)
    return instance


def test_firewall_forwards_allowed_frames_only(wire: Wire, firewall_module: ModuleType) -> None:
    stop = threading.Event()
    seen: list[bytes] = []
    result: list[object] = []
    nf_thread = threading.Thread(
        target=lambda: result.append(forward(wire, firewall_module, stop, seen))
    )
    allowed = udp_socket(wire.server_ns, wire.server_ip, ALLOWED)
    denied = udp_socket(wire.server_ns, wire.server_ip, DENIED)
    client = udp_socket(wire.client_ns, wire.client_ip)
    try:
        nf_thread.start()
        time.sleep(0.2)  # the NF's sockets are bound
        for i in range(20):
            client.sendto(b"yes %d" % i, (wire.server_ip, ALLOWED))
            client.sendto(b"no %d" % i, (wire.server_ip, DENIED))
        allowed.settimeout(2)
        got = sorted(allowed.recv(100) for _ in range(20))
        assert got == sorted(b"yes %d" % i for i in range(20))
        denied.settimeout(0.3)
        with pytest.raises(TimeoutError):
            denied.recv(100)
    finally:
        stop.set()
        nf_thread.join(5)
        for s in (allowed, denied, client):
            s.close()
    instance = result[0]
    assert instance.counters.value("acl.hits", 0) == 20  # type: ignore[attr-defined]
    assert instance.counters.value("acl.dropped") >= 20  # type: ignore[attr-defined]
    assert all(checksums_right(f) for f in seen)


def test_an_unknown_interface_is_a_capture_error(wire: Wire) -> None:
    with pytest.raises(CaptureError, match="nope0"):
        PacketSocket("nope0", netns=wire.nf_ns)
