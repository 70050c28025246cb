"""An access control list on the 5-tuple, matched a whole batch at a time.

Rules are tried in order and the first that matches decides (like iptables
or a router ACL); a packet no rule matches gets the default action. Each rule
is a handful of vectorised comparisons over the batch's header columns, so
ten rules cost some tens of NumPy operations per batch whatever its size.

A rule, as written in a descriptor's environment (JSON) or in code::

    {"action": "deny", "proto": "udp", "src": "10.0.0.0/8", "dport": "5000-5999"}

Missing fields match anything. ``src``/``dst`` are IPv4 or IPv6 prefixes (a
prefix of one version never matches packets of the other); ports are one
number or an inclusive ``lo-hi`` range; ``proto`` is ``tcp``, ``udp``,
``icmp``, ``icmpv6`` or a number.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from nfaas.errors import GraphError
from nfaas.nf.headers import HeaderArray

Action = Literal["allow", "deny"]
PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}
Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Prefix:
    version: int
    #: IPv4: (network, mask) as 32-bit ints; IPv6: the same over the two 64-bit halves
    words: tuple[tuple[int, int], ...]

    @classmethod
    def parse(cls, text: str) -> Prefix:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError as exc:
            raise GraphError(f"not an address prefix: {text!r} ({exc})") from None
        if net.version == 4:
            return cls(4, ((int(net.network_address), int(net.netmask)),))
        addr, mask = int(net.network_address), int(net.netmask)
        half = (1 << 64) - 1
        return cls(6, ((addr >> 64, mask >> 64), (addr & half, mask & half)))

    def matches(self, h: HeaderArray, field: str) -> Mask:
        if self.version == 4:
            net, mask = self.words[0]
            v4: Mask = (h["ip_version"] == 4) & (
                (h[field + "4"] & np.uint32(mask)) == np.uint32(net)
            )
            return v4
        halves = np.ascontiguousarray(h[field + "6"]).view(">u8").reshape(-1, 2).astype(np.uint64)
        ok: Mask = h["ip_version"] == 6
        for column, (net, mask) in enumerate(self.words):
            ok &= (halves[:, column] & np.uint64(mask)) == np.uint64(net)
        return ok


def _ports(value: Any) -> tuple[int, int] | None:
    if value is None or value == "any":
        return None
    lo, _, hi = str(value).partition("-")
    try:
        low, high = int(lo), int(hi or lo)
    except ValueError:
        raise GraphError(f"not a port or port range: {value!r}") from None
    if not 0 <= low <= high <= 65535:
        raise GraphError(f"not a port range: {value!r}")
    return low, high


def _proto(value: Any) -> int | None:
    if value is None or value == "any":
        return None
    if isinstance(value, str) and value.lower() in PROTOCOLS:
        return PROTOCOLS[value.lower()]
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise GraphError(f"not a protocol: {value!r}") from None
    if not 0 <= number <= 255:
        raise GraphError(f"not a protocol number: {value!r}")
    return number


@dataclass(frozen=True)
class Rule:
    action: Action
    proto: int | None = None
    src: Prefix | None = None
    dst: Prefix | None = None
    sport: tuple[int, int] | None = None
    dport: tuple[int, int] | None = None

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> Rule:
        unknown = set(spec) - {"action", "proto", "src", "dst", "sport", "dport"}
        if unknown:
            raise GraphError(f"unknown rule fields: {', '.join(sorted(unknown))}")
        action = spec.get("action")
        if action not in ("allow", "deny"):
            raise GraphError(f"a rule's action is allow or deny, not {action!r}")
        src, dst = spec.get("src"), spec.get("dst")
        return cls(
            action,
            _proto(spec.get("proto")),
            Prefix.parse(str(src)) if src not in (None, "any") else None,
            Prefix.parse(str(dst)) if dst not in (None, "any") else None,
            _ports(spec.get("sport")),
            _ports(spec.get("dport")),
        )

    def matches(self, h: HeaderArray) -> Mask:
        ok = np.ones(len(h), dtype=np.bool_)
        if self.proto is not None:
            ok &= h["proto"] == self.proto
        if self.src is not None:
            ok &= self.src.matches(h, "src")
        if self.dst is not None:
            ok &= self.dst.matches(h, "dst")
        for field, bounds in (("sport", self.sport), ("dport", self.dport)):
            if bounds is not None:
                column = h[field]
                ok &= (column >= bounds[0]) & (column <= bounds[1])
        return ok

    def allows(self) -> bool:
        return self.action == "allow"


class Acl:
    """Rules in order; ``decide`` answers the first rule each packet matches.

    Up to 63 rules are compiled into bitmask tables: one bit per rule, a table
    per field (protocol: 256 entries, each port: 65,536) holding the rules that
    field value satisfies, and an interval table per address field for the IPv4
    prefixes. A packet's rules are the AND of its fields' bitmasks, and its
    lowest set bit is the first rule it matches (one more lookup up to 16
    rules): some fifteen NumPy calls per batch of IPv4 packets whatever the
    number of rules. Longer lists are matched rule by rule.
    """

    def __init__(self, rules: Iterable[Rule | Mapping[str, Any]], default: Action = "deny") -> None:
        self.rules = [r if isinstance(r, Rule) else Rule.parse(r) for r in rules]
        if default not in ("allow", "deny"):
            raise GraphError(f"the default action is allow or deny, not {default!r}")
        self.default = default
        #: allow/deny by rule index; the last slot is the default
        self._verdicts = np.array([r.allows() for r in self.rules] + [default == "allow"])
        self._tables = _BitTables(self.rules) if 0 < len(self.rules) <= _MAX_COMPILED else None

    def decide(self, h: HeaderArray) -> npt.NDArray[np.int64]:
        """The index of the first rule each packet matches (``len(rules)``: none did)."""
        if self._tables is not None:
            return self._tables.first_match(h)
        return self.decide_in_order(h)

    def decide_in_order(self, h: HeaderArray) -> npt.NDArray[np.int64]:
        """``decide`` the plain way, one rule after the other."""
        decision = np.full(len(h), len(self.rules), dtype=np.int64)
        undecided = np.ones(len(h), dtype=np.bool_)
        for index, rule in enumerate(self.rules):
            hit = undecided & rule.matches(h)
            decision[hit] = index
            undecided &= ~hit
            if not undecided.any():
                break
        return decision

    def allowed(self, h: HeaderArray) -> Mask:
        verdicts: Mask = self._verdicts[self.decide(h)]
        return verdicts


_MAX_COMPILED = 63


#: up to this many rules, the first matching rule is one lookup in a table of 2**rules entries
_FIRST_TABLE_RULES = 16


class _BitTables:
    """The compiled form of up to 63 rules; ``first_match`` is a fixed handful of NumPy calls.

    IPv4 prefixes of a field become one interval table: the prefixes' ends cut the
    address space into intervals, each holding the bits of the rules whose prefix covers
    it, so a batch's addresses are placed with one ``searchsorted`` and one lookup
    whatever the number of prefixes. IPv6 prefixes are compared one by one, and only
    when the batch holds packets that are not IPv4.
    """

    def __init__(self, rules: list[Rule]) -> None:
        self.count = len(rules)
        self.proto = np.zeros(256, dtype=np.uint64)
        self.sport = np.zeros(65536, dtype=np.uint64)
        self.dport = np.zeros(65536, dtype=np.uint64)
        anyone = {"src": 0, "dst": 0}
        prefixes: dict[tuple[str, Prefix], int] = {}
        for index, rule in enumerate(rules):
            bit = 1 << index
            if rule.proto is None:
                self.proto |= np.uint64(bit)
            else:
                self.proto[rule.proto] |= np.uint64(bit)
            for table, bounds in ((self.sport, rule.sport), (self.dport, rule.dport)):
                lo, hi = bounds if bounds is not None else (0, 65535)
                table[lo : hi + 1] |= np.uint64(bit)
            for field, prefix in (("src", rule.src), ("dst", rule.dst)):
                if prefix is None:
                    anyone[field] |= bit
                else:
                    prefixes[(field, prefix)] = prefixes.get((field, prefix), 0) | bit
        self.anyone = {field: np.uint64(bits) for field, bits in anyone.items()}
        self.v4 = {f: _intervals(anyone[f], prefixes, f) for f in ("src", "dst")}
        self.v6 = {
            f: [(p, np.uint64(b)) for (g, p), b in prefixes.items() if g == f and p.version == 6]
            for f in ("src", "dst")
        }
        self.first: npt.NDArray[np.int64] | None = None
        if self.count <= _FIRST_TABLE_RULES:
            bits = np.arange(1 << self.count, dtype=np.uint64)
            self.first = _lowest_bit(bits, self.count)

    def first_match(self, h: HeaderArray) -> npt.NDArray[np.int64]:
        bits = self.proto[h["proto"]] & self.sport[h["sport"]] & self.dport[h["dport"]]
        is4 = h["ip_version"] == 4
        only4 = bool(is4.all())
        for field in ("src", "dst"):
            bits &= self._addressed(h, field, is4, only4)
        if self.first is not None:
            first: npt.NDArray[np.int64] = self.first[bits]
            return first
        return _lowest_bit(bits, self.count)

    def _addressed(
        self, h: HeaderArray, field: str, is4: Mask, only4: bool
    ) -> npt.NDArray[np.uint64] | np.uint64:
        """The bits of the rules each packet's ``field`` address satisfies."""
        intervals = self.v4[field]
        v4: npt.NDArray[np.uint64] | np.uint64 = self.anyone[field]
        if intervals is not None:
            starts, values = intervals
            v4 = values[np.searchsorted(starts, h[field + "4"], side="right")]
        if only4:
            return v4
        other = np.full(len(h), self.anyone[field])
        for prefix, rule_bits in self.v6[field]:
            other |= np.where(prefix.matches(h, field), rule_bits, np.uint64(0))
        return np.where(is4, v4, other)


def _intervals(
    anyone: int, prefixes: Mapping[tuple[str, Prefix], int], field: str
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint64]] | None:
    """IPv4 prefixes of ``field`` as interval starts (past 0) and each interval's rule bits.

    ``values[searchsorted(starts, address, side="right")]`` is the bits for ``address``.
    """
    ranges = []
    for (f, prefix), bits in prefixes.items():
        if f == field and prefix.version == 4:
            net, mask = prefix.words[0]
            ranges.append((net, net + ((~mask) & 0xFFFFFFFF) + 1, bits))
    if not ranges:
        return None
    cuts = sorted({edge for lo, hi, _ in ranges for edge in (lo, hi) if 0 < edge < 1 << 32})
    values = [anyone] * (len(cuts) + 1)
    for k, start in enumerate([0, *cuts]):
        for lo, hi, bits in ranges:
            if lo <= start < hi:
                values[k] |= bits
    return np.array(cuts, dtype=np.uint32), np.array(values, dtype=np.uint64)


def _lowest_bit(bits: npt.NDArray[np.uint64], count: int) -> npt.NDArray[np.int64]:
    """The index of each value's lowest set bit; ``count`` where none is set."""
    lowest = bits & (~bits + np.uint64(1))
    # a power of two is exact as a float: its exponent is the bit's index
    index = np.frexp(lowest.astype(np.float64))[1].astype(np.int64) - 1
    return np.where(bits == 0, count, index)
