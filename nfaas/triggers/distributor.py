"""The distributor: which version of a function an event goes to (EVE025 7.2.5).

A version-mapping policy gives each live version a weight; an event picks a
version in proportion to the weights. After onboarding, the newest version
holds all the weight, so new events go to new instances while the old
version's instances drain.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from nfaas.errors import NotFound

FunctionKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class VersionPolicy:
    """Weights per version, summing to 100."""

    weights: tuple[tuple[str, int], ...]

    @classmethod
    def single(cls, version: str) -> VersionPolicy:
        return cls(((version, 100),))

    @property
    def versions(self) -> list[str]:
        return [v for v, w in self.weights if w > 0]


class Distributor:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._policies: dict[FunctionKey, VersionPolicy] = {}
        self._rng = rng or random.Random()

    def set_policies(self, policies: dict[FunctionKey, VersionPolicy]) -> None:
        self._policies = dict(policies)

    def policy(self, app: str, function: str) -> VersionPolicy | None:
        return self._policies.get((app, function))

    def pick(self, app: str, function: str) -> str:
        policy = self._policies.get((app, function))
        if policy is None:
            raise NotFound(f"no enabled function {app}/{function}")
        weights = policy.weights
        if len(weights) == 1:
            return weights[0][0]
        point = self._rng.random() * 100
        for version, weight in weights:
            point -= weight
            if point < 0:
                return version
        return weights[-1][0]

    def live_versions(self) -> set[tuple[str, str, str]]:
        return {(app, fn, v) for (app, fn), p in self._policies.items() for v in p.versions}
