"""An L4 load balancer NF with Maglev consistent hashing (nfaas.nf, docs/nf-framework.md).

Packets to the virtual address ``LB_VIP`` (``address:port``, TCP or UDP) get
their destination rewritten to one of ``LB_BACKENDS``; other packets are
dropped. A new flow's back-end comes from the Maglev table; the connection
table then keeps the flow on it, even if the back-end set changes, until the
flow is idle for ``LB_IDLE_TIMEOUT_S``. Counters ``backend.packets`` and
``backend.bytes`` have one slot per back-end, in the order given.
"""

from __future__ import annotations

import ipaddress
import os

import numpy as np

from nfaas.nf import NetworkFunction, NFContext, PacketBatch
from nfaas.nf.flowhash import flow_hashes
from nfaas.nf.function import NFFunction
from nfaas.nf.maglev import DEFAULT_SIZE, MaglevTable

#: what the descriptor sets; the module is also imported without it (tests, tools)
DEFAULT_BACKENDS = "10.1.0.1:8080,10.1.0.2:8080,10.1.0.3:8080,10.1.0.4:8080"


def _endpoint(text: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    host, _, port = text.strip().rpartition(":")
    return ipaddress.ip_address(host.strip("[]")), int(port)


def _as16(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    return ip.packed if ip.version == 6 else bytes(16)


def build(vip: str, backends: list[str], table_size: int = DEFAULT_SIZE,
          idle_timeout_s: float = 60.0) -> NetworkFunction:  # fmt: skip
    vip_ip, vip_port = _endpoint(vip)
    ends = [_endpoint(b) for b in backends]
    if any(ip.version != vip_ip.version for ip, _ in ends):
        raise ValueError("the back-ends must be of the virtual address's IP version")
    maglev = MaglevTable([str(b) for b in backends], table_size)
    vip16 = np.frombuffer(_as16(vip_ip), dtype=np.uint8)
    addr16 = np.array([np.frombuffer(_as16(ip), dtype=np.uint8) for ip, _ in ends])
    addr4 = np.array([int(ip) if ip.version == 4 else 0 for ip, _ in ends], dtype=np.uint32)
    ports = np.array([port for _, port in ends], dtype=np.uint16)

    nf = NetworkFunction("lb", backends=list(backends))
    nf.table("conns", np.int64, idle_timeout_s=idle_timeout_s)
    nf.counter("backend.packets", len(ends)).counter("backend.bytes", len(ends))

    def to_vip(batch: PacketBatch, ctx: NFContext) -> np.ndarray:
        h = batch.headers
        if vip_ip.version == 4:
            to_address = h["dst4"] == int(vip_ip)
        else:
            to_address = (h["ip_version"] == 6) & (h["dst6"] == vip16).all(axis=1)
        return to_address & (h["dport"] == vip_port) & ((h["proto"] == 6) | (h["proto"] == 17))

    def choose(batch: PacketBatch, ctx: NFContext) -> np.ndarray:
        hashes = flow_hashes(batch.headers)
        conns = ctx.table("conns")
        known, backend = conns.lookup(hashes, now=ctx.now)
        fresh = ~known
        backend[fresh] = maglev.lookup(hashes[fresh])
        conns.upsert(hashes[fresh], backend[fresh], ctx.now)
        return backend

    def count(batch: PacketBatch, ctx: NFContext) -> None:
        chosen = batch.meta["backend"]
        ctx.counters.add_each("backend.packets", chosen)
        ctx.counters.add_each("backend.bytes", chosen, weights=batch.lengths)

    def rewrite(batch: PacketBatch, ctx: NFContext) -> None:
        chosen = batch.meta["backend"]
        h = batch.headers
        if vip_ip.version == 4:
            h["dst4"] = addr4[chosen]
        else:
            h["dst6"] = addr16[chosen]
        h["dport"] = ports[chosen]

    (nf.pipeline.parse().filter(to_vip, name="to_vip").map(choose, into="backend", name="maglev")
        .inspect(count, name="count").transform(rewrite, name="dnat").emit("out"))  # fmt: skip
    return nf


def from_environment(env: dict[str, str]) -> NFFunction:
    nf = build(
        env.get("LB_VIP", "10.0.0.100:80"),
        [b for b in env.get("LB_BACKENDS", DEFAULT_BACKENDS).split(",") if b.strip()],
        int(env.get("LB_TABLE_SIZE", str(DEFAULT_SIZE))),
        float(env.get("LB_IDLE_TIMEOUT_S", "60")),
    )
    return NFFunction(nf, mode=env.get("NF_MODE", "tunnel"))  # type: ignore[arg-type]


handle = from_environment(dict(os.environ))
