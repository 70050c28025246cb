"""Flow affinity: every event of one flow goes to the same instance (issue 5).

Opt-in per function (``scaling.affinity: flow``), for network functions that
keep per-flow state in their instance (``nfaas.nf``: flow tables, reassembly).

**The flow of an event** is what the trigger knows of it: for a UDP or TCP
port trigger, the peer's address and port and the trigger's port, hashed with
``nfaas.flows.flow_hash`` (protocol 17 or 6, local address ``LOCAL_ADDRESS``):
the same number ``nfaas.nf.flowhash.flow_hashes`` gives for the packet an NF
makes of that event (``nfaas.nf.io.datagram``). Frames tunnelled inside one
datagram belong to the datagram's flow; an NF that needs their own flows
derives them itself. Other events (HTTP, timer, MQTT, chain, invoke) carry no
flow and go to any instance with a free slot, as without affinity.

**Placement** is rendezvous (highest random weight) hashing over the
deployment's *members*, its ready instances whose sandbox is usable: each
pair (flow, instance) scores ``mix64(flow ^ salt(instance id))`` and the flow
belongs to the instance scoring highest. Jump hashing (``nfaas.flows.jump_hash``)
is cheaper per event but only the last of its buckets can go without moving
other flows, and instances here are deleted in any order (idle, failed).
The mapping therefore changes only when the membership does:

- an instance becomes ready: the flows it now scores highest for move to it,
  about 1/(n+1) of them with n members before; no other flow moves;
- an instance is deleted (idle period over, sandbox failed, shutdown): only its
  flows move, each to the member it scored second-highest for, so they spread
  evenly over the rest; no other flow moves;
- an instance still starting is not a member: its future flows stay where they
  are until it is ready.

Events already running stay where they run: while a flow moves, its previous
event may still run on the old instance as the next one starts on the new.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from typing import Protocol, TypeVar

from nfaas.flows import LOCAL_ADDRESS, address_int, flow_hash, mix64
from nfaas.sandboxes.base import Event

#: IANA protocol numbers of the triggers whose events carry a flow
_PROTOCOLS = {"udp": 17, "tcp": 6}


class Member(Protocol):
    @property
    def id(self) -> str: ...


M = TypeVar("M", bound=Member)


def flow_of(event: Event) -> int | None:
    """The flow hash of a UDP or TCP trigger's event; None for other events."""
    proto = _PROTOCOLS.get(event.trigger)
    if proto is None:
        return None
    host, _, peer_port = str(event.meta.get("peer", "")).rpartition(":")
    try:
        address = host.strip("[]")
        address_int(address)
        sport, dport = int(peer_port), int(str(event.meta.get("port", 0)))
    except ValueError:  # a TCP event whose peer the socket did not say
        return None
    return flow_hash(address, LOCAL_ADDRESS, sport, dport, proto)


@functools.lru_cache(maxsize=4096)
def _salt(instance_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(instance_id.encode(), digest_size=8).digest(), "big")


def owner(flow: int, members: Iterable[M]) -> M | None:
    """The member the flow belongs to (rendezvous hashing); None when there is none."""
    best: M | None = None
    best_score = -1
    for member in members:
        score = mix64(flow ^ _salt(member.id))
        if score > best_score:
            best, best_score = member, score
    return best
