"""What is running and how it behaves: instances, triggers, metrics."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Header, Response

from nfaas.api.auth import Principal
from nfaas.ebpf.metrics import counters_json
from nfaas.platform import Platform


def router(platform: Platform, principal: Any) -> APIRouter:
    api = APIRouter()

    def app_owners() -> dict[str, str]:
        """Each onboarded application's tenant, read once per request."""
        owners: dict[str, str] = {}
        for record in platform.store.list_packages():
            if record.app and record.onboarding_state == "ONBOARDED":
                owners.setdefault(record.app, record.tenant)
        return owners

    @api.get("/api/v1/instances", tags=["observe"])
    async def list_instances(who: Principal = Depends(principal)) -> list[dict[str, Any]]:
        return [asdict(i) for i in platform.manager.instances() if who.may_touch(i.tenant)]

    @api.get("/api/v1/triggers", tags=["observe"])
    async def list_triggers(who: Principal = Depends(principal)) -> list[dict[str, Any]]:
        owners = app_owners()
        return [t for t in platform.triggers.snapshot() if who.may_touch(owners.get(t["app"], ""))]

    @api.get("/api/v1/metrics", tags=["observe"])
    async def metrics_json(who: Principal = Depends(principal)) -> dict[str, Any]:
        owners = app_owners()
        functions = {
            key: value
            for key, value in platform.telemetry.as_json().items()
            if who.may_touch(owners.get(key.split("/", 1)[0], ""))
        }
        out: dict[str, Any] = {"functions": functions}
        # eBPF VNFs count in their own maps, read now (docs/metrics.md)
        out["ebpf"] = counters_json(platform.ebpf, who.scope)
        if who.is_operator:
            out["dropped"] = platform.telemetry.dropped_counts()
            out["node"] = platform.capacity.snapshot()
            out["pools"] = {p.id: asdict(p.snapshot()) for p in platform.pools.values()}
        return out

    @api.get("/metrics", tags=["observe"], response_class=Response)
    async def metrics_prometheus(authorization: str | None = Header(default=None)) -> Response:
        """Prometheus text exposition (operator token, unless metrics_public); see docs/metrics.md."""
        if not platform.config.metrics_public:
            platform.auth.authenticate(authorization).require_operator("reading /metrics")
        return Response(
            platform.telemetry.prometheus(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    @api.get("/healthz", tags=["observe"])
    async def health() -> dict[str, str]:
        return {"status": platform.state.value}

    return api
