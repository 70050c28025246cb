"""Version-mapping policies (EVE025 7.2.5, gap #5.1): canary weights, promote, rollback."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from nfaas.api.auth import Principal
from nfaas.canary.rules import RollbackRule
from nfaas.platform import Platform
from nfaas.triggers.distributor import StickyKey


class StickyKeyModel(BaseModel):
    """Where events carry the key that keeps one device or flow on one version."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["header", "json", "meta"] = Field(
        description="header: an HTTP header; json: a field of a JSON body; meta: a trigger "
        "detail (peer for UDP and TCP senders, topic for MQTT)"
    )
    name: str = Field(min_length=1, max_length=200)


class PolicyPut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weights: dict[str, int] = Field(
        description="serving version -> share of the events in percent; the shares sum to 100",
        examples=[{"1.0.0": 80, "2.0.0": 20}],
    )
    sticky: StickyKeyModel | None = None
    rollbackRule: RollbackRule | None = None


class PromoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str | None = Field(None, description="default: the heaviest canary, else the newest")


class RollbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=1000)


def router(platform: Platform, principal: Any) -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["versions"])
    versions = platform.versions

    @api.get("/functions/{app}/{name}/policy")
    async def get_policy(
        app: str, name: str, who: Principal = Depends(principal)
    ) -> dict[str, Any]:
        """The version-mapping policy in force, and the stored one if it is set aside."""
        return versions.describe(app, name, who.scope)

    @api.put("/functions/{app}/{name}/policy")
    async def put_policy(
        app: str, name: str, body: PolicyPut, who: Principal = Depends(principal)
    ) -> dict[str, Any]:
        """Set the weights (a canary), the sticky key and the automatic rollback rule."""
        sticky = StickyKey(body.sticky.source, body.sticky.name) if body.sticky else None
        return await versions.set_policy(
            app, name, who.scope, body.weights, sticky=sticky, rule=body.rollbackRule
        )

    @api.delete("/functions/{app}/{name}/policy")
    async def reset_policy(
        app: str, name: str, who: Principal = Depends(principal)
    ) -> dict[str, Any]:
        """Forget the stored policy: the newest enabled version takes every event."""
        return await versions.reset(app, name, who.scope)

    @api.post("/functions/{app}/{name}/promote")
    async def promote(
        app: str, name: str, body: PromoteBody | None = None,
        who: Principal = Depends(principal),
    ) -> dict[str, Any]:  # fmt: skip
        """Give one version every event; it becomes the stable version."""
        return await versions.promote(app, name, who.scope, body.version if body else None)

    @api.post("/functions/{app}/{name}/rollback")
    async def rollback(
        app: str, name: str, body: RollbackBody | None = None,
        who: Principal = Depends(principal),
    ) -> dict[str, Any]:  # fmt: skip
        """Every event back to the stable version (without a canary: to the previous one)."""
        return await versions.rollback(app, name, who.scope, body.reason if body else "")

    @api.get("/events", tags=["observe"])
    async def recent_events(
        limit: int = 50, who: Principal = Depends(principal)
    ) -> list[dict[str, Any]]:
        """Recent lifecycle events, the newest first (the notification types of subscriptions)."""
        return [e.as_dict() for e in platform.events.recent(who.scope, max(1, min(limit, 200)))]

    return api
