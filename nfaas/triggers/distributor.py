"""The distributor: which version of a function an event goes to (EVE025 7.2.5).

A version-mapping policy gives each live version a weight; an event picks a
version in proportion to the weights. Without a stored policy the newest
version holds all the weight, so new events go to new instances while the old
version's instances drain; a canary policy (``nfaas.canary``) splits them.

A sticky policy names where an event carries its key (a device id, a flow):
the key is hashed to a point of [0, 100), so one key always lands on the same
version, and keys spread over versions in proportion to the weights. The stable
version comes first, so raising a canary's weight only moves keys towards it.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Literal

import orjson

from nfaas.errors import InvalidVersionPolicy, NotFound
from nfaas.sandboxes.base import Event

FunctionKey = tuple[str, str]

#: where an event carries its sticky key: an HTTP header, a field of a JSON body, or a
#: trigger detail (``peer`` for UDP and TCP senders, ``topic`` for MQTT)
StickySource = Literal["header", "json", "meta"]

_SCALE = 100.0 / float(1 << 64)


@dataclass(frozen=True, slots=True)
class StickyKey:
    source: StickySource
    name: str

    def of(self, event: Event) -> bytes | None:
        """The event's key, or None when it carries none (then the pick is random)."""
        value: object = None
        if self.source == "header":
            headers = event.meta.get("headers") or {}
            # HTTP triggers pass ASGI's lower-case names: one lookup, a scan only for others
            value = headers.get(self.name.lower())
            if value is None:
                wanted = self.name.lower()
                value = next((v for k, v in headers.items() if k.lower() == wanted), None)
        elif self.source == "meta":
            value = event.meta.get(self.name)
        elif event.body[:1] == b"{":
            try:
                body = orjson.loads(event.body)
            except orjson.JSONDecodeError:
                return None
            value = body.get(self.name) if isinstance(body, dict) else None
        if value is None or isinstance(value, dict | list):
            return None
        return str(value).encode()


@dataclass(frozen=True, slots=True)
class VersionPolicy:
    """Weights per version, summing to 100; the stable version first."""

    weights: tuple[tuple[str, int], ...]
    sticky: StickyKey | None = None

    @classmethod
    def single(cls, version: str) -> VersionPolicy:
        return cls(((version, 100),))

    @classmethod
    def of(
        cls, weights: dict[str, int], serving: list[str], sticky: StickyKey | None = None
    ) -> VersionPolicy:
        """A policy over ``serving`` versions, or ``InvalidVersionPolicy`` saying what is wrong."""
        unknown = sorted(v for v in weights if v not in serving)
        if unknown:
            raise InvalidVersionPolicy(
                f"no serving version {', '.join(unknown)}; serving: {', '.join(serving)}",
                unknown=unknown,
                serving=serving,
            )
        negative = sorted(v for v, w in weights.items() if not 0 <= w <= 100)
        if negative:
            raise InvalidVersionPolicy(
                f"weights are whole percentages from 0 to 100; {', '.join(negative)} is not"
            )
        total = sum(weights.values())
        if total != 100:
            raise InvalidVersionPolicy(
                f"weights must sum to 100, not {total} ({_show(weights)})", total=total
            )
        return cls(tuple((v, w) for v, w in weights.items() if w > 0), sticky)

    @property
    def versions(self) -> list[str]:
        return [v for v, w in self.weights if w > 0]

    def at(self, point: float) -> str:
        """The version owning ``point`` of [0, 100) on the cumulative weights."""
        for version, weight in self.weights:
            point -= weight
            if point < 0:
                return version
        return self.weights[-1][0]


def _show(weights: dict[str, int]) -> str:
    return ", ".join(f"{v}={w}" for v, w in weights.items())


def sticky_point(key: bytes) -> float:
    """A key's point of [0, 100): the same for every process and every run."""
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "big") * _SCALE


class Distributor:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._policies: dict[FunctionKey, VersionPolicy] = {}
        self._rng = rng or random.Random()

    def set_policies(self, policies: dict[FunctionKey, VersionPolicy]) -> None:
        self._policies = dict(policies)

    def policy(self, app: str, function: str) -> VersionPolicy | None:
        return self._policies.get((app, function))

    def policies(self) -> dict[FunctionKey, VersionPolicy]:
        return dict(self._policies)

    def pick(self, app: str, function: str, event: Event | None = None) -> str:
        policy = self._policies.get((app, function))
        if policy is None:
            raise NotFound(f"no enabled function {app}/{function}")
        weights = policy.weights
        if len(weights) == 1:
            return weights[0][0]
        if policy.sticky is not None and event is not None:
            key = policy.sticky.of(event)
            if key is not None:
                return policy.at(sticky_point(key))
        return policy.at(self._rng.random() * 100)

    def live_versions(self) -> set[tuple[str, str, str]]:
        return {(app, fn, v) for (app, fn), p in self._policies.items() for v in p.versions}
