"""The 5-tuple ACL: first match decides, prefixes of both IP versions, port ranges."""

from __future__ import annotations

import numpy as np
import pytest

from nfaas.errors import GraphError
from nfaas.nf import PacketBatch
from nfaas.nf.acl import Acl
from tests.nf.kit import ICMP, TCP, UDP, frame

RULES = [
    {"action": "deny", "src": "10.66.0.0/16"},
    {"action": "allow", "proto": "udp", "dport": 53},
    {"action": "allow", "proto": "tcp", "dst": "192.0.2.0/24", "dport": "80-443"},
    {"action": "deny", "proto": "tcp", "sport": "0-1023"},
    {"action": "allow", "src": "2001:db8:1::/48"},
    {"action": "allow", "proto": 1},
]


def decide(*frames: bytes) -> list[int]:
    batch = PacketBatch.from_frames(list(frames))
    batch.parse()
    return Acl(RULES).decide(batch.headers).tolist()


def test_first_matching_rule_decides() -> None:
    assert decide(
        frame("10.66.1.1", "8.8.8.8", 5000, 53, UDP),       # 0: denied before the DNS rule
        frame("10.1.1.1", "8.8.8.8", 5000, 53, UDP),        # 1
        frame("10.1.1.1", "192.0.2.10", 5000, 443, TCP),    # 2
        frame("10.1.1.1", "192.0.2.10", 5000, 444, TCP),    # 6: no rule, the default
        frame("10.1.1.1", "192.0.3.10", 80, 80, TCP),       # 3
        frame("2001:db8:1::5", "2001:db8::1", 1, 2, TCP),   # 3: low source port first
        frame("2001:db8:1::5", "2001:db8::1", 2000, 2, TCP),  # 4
        frame("2001:db8:2::5", "2001:db8::1", 2000, 2, TCP),  # 6
        frame("10.0.0.1", "10.0.0.2", proto=ICMP, payload=b"\x08\0ping"),  # 5
    ) == [0, 1, 2, 6, 3, 3, 4, 6, 5]  # fmt: skip


def test_verdicts_and_default() -> None:
    batch = PacketBatch.from_frames([frame("10.66.0.1"), frame(dport=53), frame(dport=9)])
    batch.parse()
    assert Acl(RULES).allowed(batch.headers).tolist() == [False, True, False]
    assert Acl(RULES, default="allow").allowed(batch.headers).tolist() == [False, True, True]


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        ({"action": "maybe"}, "allow or deny"),
        ({"action": "deny", "src": "10.0.0.300/8"}, "not an address prefix"),
        ({"action": "deny", "dport": "90-80"}, "port range"),
        ({"action": "deny", "proto": "sctpx"}, "not a protocol"),
        ({"action": "deny", "port": 80}, "unknown rule fields: port"),
    ],
)
def test_bad_rules_are_refused(rule: dict[str, object], words: str) -> None:
    with pytest.raises(GraphError, match=words):
        Acl([rule])


def test_compiled_tables_decide_as_rule_by_rule_does() -> None:
    rng = np.random.default_rng(9)
    frames = []
    for _ in range(3000):
        v6 = rng.random() < 0.2
        src = (
            f"2001:db8:{rng.integers(3)}::{rng.integers(9)}"
            if v6
            else f"10.{rng.choice([1, 66])}.0.{rng.integers(9)}"
        )
        dst = "2001:db8::1" if v6 else f"192.0.{rng.integers(2, 4)}.{rng.integers(9)}"
        proto = int(rng.choice([TCP, UDP, ICMP]))
        frames.append(frame(src, dst, int(rng.choice([22, 80, 1000, 5000])), int(rng.choice([53, 80, 443, 444])),
                            proto, b"\x08\0ping" if proto == ICMP else b"x"))  # fmt: skip
    batch = PacketBatch.from_frames(frames)
    batch.parse()
    acl = Acl(RULES)
    compiled = acl.decide(batch.headers)
    assert compiled.tolist() == acl.decide_in_order(batch.headers).tolist()
    assert len(set(compiled.tolist())) == len(RULES) + 1  # every rule and the default were hit


def test_long_lists_are_matched_rule_by_rule() -> None:
    rules = [{"action": "deny", "dport": p} for p in range(100)] + [
        {"action": "allow", "proto": "udp"}
    ]
    batch = PacketBatch.from_frames([frame(dport=99), frame(dport=100)])
    batch.parse()
    assert Acl(rules).decide(batch.headers).tolist() == [99, 100]


@pytest.mark.parametrize("extra", [0, 14])  # 8 rules (the first-bit table), 22 (computed)
def test_nested_ipv4_prefixes_decide_as_rule_by_rule_does(extra: int) -> None:
    rules = [
        {"action": "deny", "src": "10.1.2.0/24"},
        {"action": "allow", "src": "10.1.0.0/16", "dst": "0.0.0.0/0"},
        {"action": "deny", "src": "10.0.0.0/8", "dst": "255.255.255.255/32"},
        {"action": "allow", "dst": "192.0.2.128/25", "proto": "udp"},
        {"action": "deny", "src": "0.0.0.0/1"},
        {"action": "allow", "dst": "192.0.2.0/24"},
        {"action": "deny", "src": "10.0.0.0/8"},
        {"action": "allow", "src": "128.0.0.0/1", "dport": "1000-2000"},
    ] + [{"action": "deny", "dport": 60000 + i} for i in range(extra)]
    rng = np.random.default_rng(11)
    sources = ["10.1.2.7", "10.1.3.1", "10.2.0.1", "10.255.255.255", "127.0.0.1", "200.1.1.1",
               "0.0.0.0", "255.255.255.255", "128.0.0.0", "127.255.255.255"]  # fmt: skip
    targets = ["255.255.255.255", "192.0.2.1", "192.0.2.200", "192.0.3.1", "0.0.0.0"]
    frames = []
    for _ in range(2000):
        src, dst = str(rng.choice(sources)), str(rng.choice(targets))
        dport, proto = int(rng.choice([80, 1500])), int(rng.choice([TCP, UDP]))
        frames.append(frame(src, dst, 5, dport, proto, b"x"))
    batch = PacketBatch.from_frames(frames)
    batch.parse()
    acl = Acl(rules)
    compiled = acl.decide(batch.headers)
    assert compiled.tolist() == acl.decide_in_order(batch.headers).tolist()
    assert len(set(compiled.tolist())) >= 7
