"""Subscriptions to metrics and lifecycle notifications (EVE025 gap #5.2; SOL003-style)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from nfaas.api.auth import Principal
from nfaas.notifications.subscriptions import SubscriptionFilter, SubscriptionRecord
from nfaas.platform import Platform


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    callbackUri: str = Field(
        max_length=2048,
        description="tested with a GET that must answer 204 before anything is stored",
    )
    filter: SubscriptionFilter = Field(default_factory=lambda: SubscriptionFilter())
    secret: str | None = Field(
        None, min_length=16, max_length=256,
        description="signs each notification: X-Nfaas-Signature: sha256=HMAC(secret, "
        "'<X-Nfaas-Timestamp>.<body>')",
    )  # fmt: skip


def router(platform: Platform, principal: Any) -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["subscriptions"])
    service = platform.notifications
    subs = service.subscriptions

    def shown(record: SubscriptionRecord) -> dict[str, Any]:
        return record.as_api(subs.pending(record.id))

    @api.post("/subscriptions", status_code=201)
    async def subscribe(
        body: SubscriptionCreate, response: Response, who: Principal = Depends(principal)
    ) -> dict[str, Any]:
        record = await service.subscribe(who.tenant, body.callbackUri, body.filter, body.secret)
        response.headers["Location"] = f"/api/v1/subscriptions/{record.id}"
        return shown(record)

    @api.get("/subscriptions")
    async def list_subscriptions(who: Principal = Depends(principal)) -> list[dict[str, Any]]:
        return [shown(r) for r in subs.all(who.scope)]

    @api.get("/subscriptions/{subscription_id}")
    async def get_subscription(
        subscription_id: str, who: Principal = Depends(principal)
    ) -> dict[str, Any]:
        return shown(service.get(subscription_id, who.scope))

    @api.delete("/subscriptions/{subscription_id}", status_code=204)
    async def delete_subscription(
        subscription_id: str, who: Principal = Depends(principal)
    ) -> Response:
        service.delete(subscription_id, who.scope)
        return Response(status_code=204)

    @api.post("/subscriptions/{subscription_id}/resume")
    async def resume_subscription(
        subscription_id: str, who: Principal = Depends(principal)
    ) -> dict[str, Any]:
        """A SUSPENDED subscription becomes ACTIVE again once its callback passes the test."""
        return shown(await service.resume(subscription_id, who.scope))

    return api
