"""The live web dashboard: a static page at ``/dashboard`` polling ``/api/v1/dashboard``.

The page holds no data and needs no token; the JSON it polls does, and shows
what the token's principal may see.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import APIRouter, Depends, Response

from nfaas.api.auth import Principal
from nfaas.dashboard.history import LatencyHistory
from nfaas.dashboard.snapshot import dashboard_snapshot
from nfaas.errors import NotFound
from nfaas.platform import Platform

#: the page's files and their media types: nothing else is served from the folder
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


def _asset(name: str) -> bytes:
    return (resources.files("nfaas.dashboard") / "static" / name).read_bytes()


def router(platform: Platform, principal: Any) -> APIRouter:
    api = APIRouter(tags=["observe"])
    history = LatencyHistory(platform.telemetry.duration_histograms)

    @api.get("/dashboard", include_in_schema=False)
    async def page() -> Response:
        return Response(_asset("index.html"), media_type=ASSETS["index.html"])

    @api.get("/dashboard/{asset}", include_in_schema=False)
    async def asset(asset: str) -> Response:
        if asset not in ASSETS or asset == "index.html":
            raise NotFound(f"no dashboard file {asset}")
        return Response(_asset(asset), media_type=ASSETS[asset])

    @api.get("/api/v1/dashboard")
    async def snapshot(who: Principal = Depends(principal)) -> dict[str, Any]:
        """Everything the dashboard draws, as the caller may see it (polled every second)."""
        return dashboard_snapshot(platform, who.scope, history)

    return api
