"""Packets out of the events of a UDP or TCP port trigger, and replies out of packets.

Two ways an NF function gets packets from a port trigger:

``datagram``
    each event is one packet: a UDP (or, from a TCP trigger, TCP) packet from
    the event's peer to the trigger's port, carrying the event's body. The
    frame is made here (Ethernet, IPv4 or IPv6, L4 header, checksums right),
    so the same graph that reads an interface reads trigger events. The reply
    is the packet's payload if the NF let it through (an ``emit`` on port
    ``out``), nothing if it dropped it.
``tunnel``
    each event carries whole Ethernet frames, each prefixed by its length as
    a 16-bit big-endian number (a gateway forwarding traffic to the NF over
    UDP). The reply carries, the same way, the frames the NF emitted on ``out``.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence

import numpy as np

from nfaas.flows import LOCAL_ADDRESS
from nfaas.nf.batch import PacketBatch
from nfaas.nf.headers import ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, IPPROTO_UDP

#: the address a packet made from an event goes to (the trigger binds 127.0.0.1 by default)
DEFAULT_LOCAL = LOCAL_ADDRESS  # the platform hashes flows to it too (flow affinity)
_MAC_PEER = bytes.fromhex("020000000001")
_MAC_LOCAL = bytes.fromhex("020000000002")
_LENGTH = struct.Struct("!H")


def split_tunnel(body: bytes) -> tuple[list[bytes], int]:
    """The frames of a tunnel body, and how many bytes at the end did not make a whole frame."""
    frames: list[bytes] = []
    at = 0
    while at + 2 <= len(body):
        (size,) = _LENGTH.unpack_from(body, at)
        if at + 2 + size > len(body):
            break
        frames.append(body[at + 2 : at + 2 + size])
        at += 2 + size
    return frames, len(body) - at


def join_tunnel(frames: Sequence[bytes]) -> bytes:
    return b"".join(_LENGTH.pack(len(f)) + f for f in frames)


def parse_peer(peer: str) -> tuple[str, int]:
    """``"10.0.0.1:5000"`` or ``"::1:5000"`` as an address and a port (0.0.0.0:0 if unknown)."""
    host, _, port = peer.rpartition(":")
    try:
        return str(ipaddress.ip_address(host.strip("[]"))), int(port)
    except ValueError:
        return "0.0.0.0", 0


def _l4(proto: int, sport: int, dport: int, payload: bytes) -> bytes:
    if proto == IPPROTO_TCP:  # ACK|PSH, sequence numbers zero: a segment out of no stream
        return struct.pack("!HHIIBBHHH", sport, dport, 0, 0, 5 << 4, 0x18, 65535, 0, 0) + payload
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def make_frame(payload: bytes, peer: tuple[str, int], local: tuple[str, int], proto: int) -> bytes:
    """An Ethernet frame from ``peer`` to ``local``; checksums are left zero (``fix_checksums``)."""
    src, dst = ipaddress.ip_address(peer[0]), ipaddress.ip_address(local[0])
    if src.version != dst.version:  # an IPv4 peer of an IPv6 listener, or the reverse
        src = ipaddress.ip_address("::ffff:" + str(src)) if src.version == 4 else src
        dst = ipaddress.ip_address("::ffff:" + str(dst)) if dst.version == 4 else dst
    segment = _l4(proto, peer[1], local[1], payload)
    if src.version == 4:
        ip = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(segment), 0, 0x4000, 64, proto, 0)
        return (
            _MAC_LOCAL + _MAC_PEER + _LENGTH.pack(ETH_P_IP) + ip + src.packed + dst.packed + segment
        )
    ip6 = struct.pack("!IHBB", 6 << 28, len(segment), proto, 64)
    return (
        _MAC_LOCAL + _MAC_PEER + _LENGTH.pack(ETH_P_IPV6) + ip6 + src.packed + dst.packed + segment
    )


def packets_from_events(
    events: Sequence[tuple[str, bytes, dict[str, object]]], local_address: str = DEFAULT_LOCAL
) -> PacketBatch:
    """One packet per ``(trigger, body, meta)`` event, checksums right; ``meta["event"]`` says whose."""
    frames = []
    for trigger, body, meta in events:
        peer = parse_peer(str(meta.get("peer", "")))
        local = (local_address, int(str(meta.get("port", 0))))
        proto = IPPROTO_TCP if trigger == "tcp" else IPPROTO_UDP
        frames.append(make_frame(body, peer, local, proto))
    batch = PacketBatch.from_frames(frames)
    batch.parse()
    batch.fix_checksums()
    batch.meta["event"] = np.arange(len(frames), dtype=np.int64)
    return batch
