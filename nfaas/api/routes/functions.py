"""Functions and their versions (the code repository of EVE025 7.2.5), and authenticated invocation."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from nfaas.api.auth import Principal
from nfaas.api.body import read_body
from nfaas.api.gateway import function_headers
from nfaas.errors import NotFound
from nfaas.platform import Platform
from nfaas.sandboxes.base import Event


def router(platform: Platform, principal: Any) -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["functions"])
    store = platform.store

    def visible(who: Principal) -> dict[tuple[str, str], list[dict[str, Any]]]:
        grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for f in store.list_functions():
            if who.may_touch(f.tenant):
                grouped.setdefault((f.app, f.name), []).append(
                    {
                        "version": f.version,
                        "package": f.package_id,
                        "createdAt": f.created_at,
                        "descriptor": f.descriptor,
                    }
                )
        return grouped

    def summary(
        app: str, name: str, versions: list[dict[str, Any]], current: str | None
    ) -> dict[str, Any]:
        enabled = current is not None
        desc = next(
            (v["descriptor"] for v in versions if v["version"] == current),
            versions[-1]["descriptor"],
        )
        policy = platform.distributor.policy(app, name)
        key = (app, name, current or "")
        stats = (
            platform.telemetry.stats(key).as_dict() if platform.telemetry.has_stats(key) else None
        )
        return {
            "app": app,
            "name": name,
            "currentVersion": current,
            "enabled": enabled,
            "weights": dict(policy.weights) if policy else {},
            "runtime": f"{desc['runtime']['name']}:{desc['runtime']['version']}",
            "triggers": desc["triggers"],
            "versions": [v["version"] for v in versions],
            "stats": stats,
        }

    @api.get("/functions")
    async def list_functions(who: Principal = Depends(principal)) -> list[dict[str, Any]]:
        # One read of the current versions for the whole list, not one per function.
        current = store.current_versions()
        return [
            summary(app, name, versions, current.get((app, name)))
            for (app, name), versions in sorted(visible(who).items())
        ]

    @api.get("/functions/{app}/{name}")
    async def get_function(
        app: str, name: str, who: Principal = Depends(principal)
    ) -> dict[str, Any]:
        versions = visible(who).get((app, name))
        if not versions:
            raise NotFound(f"no function {app}/{name}")
        return summary(app, name, versions, store.current_versions().get((app, name))) | {
            "descriptors": {v["version"]: v["descriptor"] for v in versions}
        }

    @api.get("/functions/{app}/{name}/versions")
    async def list_versions(
        app: str, name: str, who: Principal = Depends(principal)
    ) -> list[dict[str, Any]]:
        versions = visible(who).get((app, name))
        if not versions:
            raise NotFound(f"no function {app}/{name}")
        current = store.current_versions().get((app, name))
        return [
            {
                "version": v["version"],
                "package": v["package"],
                "createdAt": v["createdAt"],
                "current": v["version"] == current,
            }
            for v in versions
        ]

    @api.post("/functions/{app}/{name}/invoke")
    async def invoke(
        app: str, name: str, request: Request, who: Principal = Depends(principal)
    ) -> Response:
        """Invoke a function as its owner (what ``nfaas invoke`` does)."""
        arrival = time.monotonic()
        if not who.may_touch(platform.router.tenant_of(app, name)):
            raise NotFound(f"no enabled function {app}/{name}")
        body = await read_body(request, platform.config.max_event_bytes, "event")
        event = Event("invoke", body, {"headers": function_headers(request.headers.items())})
        result = await platform.router.dispatch(app, name, event, arrival=arrival)
        return Response(result.body, media_type=result.content_type)

    return api
