"""A firewall NF: an access control list on the 5-tuple (nfaas.nf, docs/nf-framework.md).

Rules come from ``FIREWALL_RULES`` (a JSON list, see ``nfaas.nf.acl``), the
action for packets no rule matches from ``FIREWALL_DEFAULT``. The counter
``acl.hits`` holds one slot per rule and a last one for the default.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from nfaas.nf import NetworkFunction, NFContext, PacketBatch
from nfaas.nf.acl import Acl
from nfaas.nf.function import NFFunction


def build(rules: list[dict[str, Any]], default: str = "deny") -> NetworkFunction:
    acl = Acl(rules, default)  # type: ignore[arg-type]
    nf = NetworkFunction("firewall", rules=len(acl.rules))
    nf.counter("acl.hits", len(acl.rules) + 1)
    verdicts = np.array([r.allows() for r in acl.rules] + [default == "allow"])

    def verdict(batch: PacketBatch, ctx: NFContext) -> np.ndarray:
        decision = acl.decide(batch.headers)
        ctx.counters.add_each("acl.hits", decision)
        return verdicts[decision]

    nf.pipeline.parse().filter(verdict, name="acl").emit("out")
    return nf


def from_environment(env: dict[str, str]) -> NFFunction:
    rules = json.loads(env.get("FIREWALL_RULES", "[]"))
    nf = build(rules, env.get("FIREWALL_DEFAULT", "deny"))
    return NFFunction(nf, mode=env.get("NF_MODE", "datagram"))  # type: ignore[arg-type]


handle = from_environment(dict(os.environ))
