"""Version-mapping policies (EVE025 7.2.5, gap #5.1): set, promote, roll back.

Without a stored policy a function serves its newest enabled version (an update
takes the events). A stored policy splits the events between serving versions
by weight and stays in force while every version it weights is served: onboarding
a newer version then leaves it out until the policy gives it weight (a canary) or
promotes it. A policy naming a version no longer served (its package disabled or
deleted) is set aside, and the newest version serves again.

The stable version is the last good one: the one that held all the events when
a canary began, or the one promoted. A rollback gives it every event back.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from nfaas.canary.policies import FunctionKey, PolicyRecord, PolicyStore
from nfaas.canary.rules import RollbackRule
from nfaas.catalog.store import StateStore
from nfaas.errors import Conflict, NotFound
from nfaas.notifications.events import EventLog
from nfaas.triggers.distributor import StickyKey, VersionPolicy


class VersionMapping:
    def __init__(
        self,
        store: StateStore,
        events: EventLog,
        reconcile: Callable[[], Awaitable[None]],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._policies = PolicyStore(store)
        self._events = events
        self._reconcile = reconcile
        self._clock = clock
        self._stored = self._policies.all()
        #: (app, function, by) -> rollbacks since the platform started
        self.rollback_counts: dict[tuple[str, str, str], int] = {}

    # -- what the distributor follows ---------------------------------------------------

    def effective(self, serving: dict[FunctionKey, list[str]]) -> dict[FunctionKey, VersionPolicy]:
        """Each serving function's policy: its stored one if in force, else its newest version."""
        out: dict[FunctionKey, VersionPolicy] = {}
        for key, versions in serving.items():
            record = self.in_force(key, versions)
            out[key] = record.policy() if record else VersionPolicy.single(versions[0])
        return out

    def in_force(self, key: FunctionKey, serving: list[str]) -> PolicyRecord | None:
        record = self._stored.get(key)
        if record is None or any(v not in serving for v in record.policy().versions):
            return None
        return record

    def watched(self, serving: dict[FunctionKey, list[str]]) -> list[PolicyRecord]:
        """Policies in force with a rollback rule and a canary to judge."""
        return [
            record
            for key, versions in serving.items()
            if (record := self.in_force(key, versions)) and record.rule and record.canaries
        ]

    def describe(self, app: str, name: str, scope: str | None) -> dict[str, Any]:
        key, serving, _ = self._resolve(app, name, scope)
        record = self._stored.get(key)
        active = self.in_force(key, serving)
        policy = active.policy() if active else VersionPolicy.single(serving[0])
        shown = active or record
        return {
            "app": app,
            "function": name,
            "weights": dict(policy.weights),
            "stable": active.stable if active else serving[0],
            "canaries": active.canaries if active else [],
            "source": "stored" if active else ("superseded" if record else "default"),
            "sticky": {"source": shown.sticky.source, "name": shown.sticky.name}
            if shown and shown.sticky
            else None,
            "rollbackRule": shown.rule.model_dump() if shown and shown.rule else None,
            "lastRollback": record.last_rollback if record else None,
            "servingVersions": serving,
            "updatedAt": record.updated_at if record else None,
        }

    # -- changes -------------------------------------------------------------------------

    async def set_policy(
        self, app: str, name: str, scope: str | None, weights: dict[str, int], *,
        sticky: StickyKey | None = None, rule: RollbackRule | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Store a policy (refused whole, nothing changed, if invalid) and apply it."""
        key, serving, tenant = self._resolve(app, name, scope)
        policy = VersionPolicy.of(weights, serving, sticky)
        stable = self._stable_for(key, serving, policy)
        self._put(key, policy, stable, rule, tenant, reason="set")
        await self._reconcile()
        return self.describe(app, name, scope)

    async def promote(
        self, app: str, name: str, scope: str | None, version: str | None = None
    ) -> dict[str, Any]:
        """Give ``version`` (by default the heaviest canary, else the newest) every event."""
        key, serving, tenant = self._resolve(app, name, scope)
        active = self.in_force(key, serving)
        if version is None:
            canaries = sorted(active.canaries, key=lambda v: -active.weights[v]) if active else []
            version = canaries[0] if canaries else serving[0]
        policy = VersionPolicy.of({version: 100}, serving)
        old = active.rule if active else None
        self._put(key, policy, version, old, tenant, reason="promote", sticky=active)
        await self._reconcile()
        return self.describe(app, name, scope)

    async def rollback(
        self, app: str, name: str, scope: str | None, reason: str = "", *, by: str = "manual"
    ) -> dict[str, Any]:
        """Every event to the stable version; without a canary, to the previous version."""
        key, serving, tenant = self._resolve(app, name, scope)
        active = self.in_force(key, serving)
        if active is not None and active.canaries:
            target, leaving = active.stable, active.canaries
        else:
            current = active.stable if active else serving[0]
            older = serving[serving.index(current) + 1 :]
            if not older:
                raise Conflict(f"{app}/{name} serves only {current}: no version to roll back to")
            target, leaving = older[0], [current]
        rollback = {"at": self._clock(), "from": leaving, "to": target, "reason": reason, "by": by}
        policy = VersionPolicy.of({target: 100}, serving)
        old = active.rule if active else None
        self._put(key, policy, target, old, tenant, reason="rollback", sticky=active,
                  last_rollback=rollback)  # fmt: skip
        counted = (app, name, by)
        self.rollback_counts[counted] = self.rollback_counts.get(counted, 0) + 1
        self._events.emit(
            "VersionRollback", tenant, app=app, function=name, version=target,
            **{"from": leaving, "to": target, "reason": reason, "by": by},
        )  # fmt: skip
        await self._reconcile()
        return self.describe(app, name, scope)

    async def reset(self, app: str, name: str, scope: str | None) -> dict[str, Any]:
        """Forget the stored policy: the newest enabled version serves again."""
        key, serving, tenant = self._resolve(app, name, scope)
        if self._stored.pop(key, None) is not None:
            self._policies.delete(app, name)
            self._events.emit(
                "VersionPolicyChanged", tenant, app=app, function=name, version=serving[0],
                weights={serving[0]: 100}, stable=serving[0], reason="reset",
            )  # fmt: skip
            await self._reconcile()
        return self.describe(app, name, scope)

    # -- helpers --------------------------------------------------------------------------

    def _resolve(
        self, app: str, name: str, scope: str | None
    ) -> tuple[FunctionKey, list[str], str]:
        """The function's serving versions and tenant; NotFound for what ``scope`` may not see."""
        key = (app, name)
        serving = self._store.serving_versions().get(key)
        record = self._store.get_function(app, name, serving[0]) if serving else None
        if not serving or record is None or (scope is not None and record.tenant != scope):
            raise NotFound(f"no enabled function {app}/{name}")
        return key, serving, record.tenant

    def _stable_for(self, key: FunctionKey, serving: list[str], policy: VersionPolicy) -> str:
        """The last good version of a new policy: see the module's docstring."""
        versions = policy.versions
        if len(versions) == 1:
            return versions[0]
        active = self.in_force(key, serving)
        before = active.policy().versions if active else [serving[0]]
        if len(before) == 1 and before[0] in versions:
            return before[0]
        if active is not None and active.stable in versions:
            return active.stable
        # the heaviest, and of equals the oldest (serving lists the newest first)
        weights = dict(policy.weights)
        return max(versions, key=lambda v: (weights[v], serving.index(v)))

    def _put(
        self, key: FunctionKey, policy: VersionPolicy, stable: str, rule: RollbackRule | None,
        tenant: str, *, reason: str, sticky: PolicyRecord | None = None,
        last_rollback: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        """Store and announce; ``sticky`` given: keep that record's sticky key."""
        previous = self._stored.get(key)
        weights = {stable: 0, **dict(policy.weights)}
        weights = {v: weights[v] for v in sorted(weights, key=lambda v: v != stable)}
        record = PolicyRecord(
            key[0], key[1], {v: w for v, w in weights.items() if w > 0}, stable,
            sticky.sticky if sticky is not None else policy.sticky, rule, self._clock(),
            last_rollback or (previous.last_rollback if previous else None),
        )  # fmt: skip
        self._policies.put(record)
        self._stored[key] = record
        self._events.emit(
            "VersionPolicyChanged", tenant, app=key[0], function=key[1], version=stable,
            weights=record.weights, stable=stable, reason=reason,
        )  # fmt: skip
