"""Keep-alive decisions (read-only): what each function's policy holds and pre-warms."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends

from nfaas.api.auth import Principal
from nfaas.platform import Platform


def router(platform: Platform, principal: Any) -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["observe"])

    @api.get("/keepalive")
    async def keepalive_decisions(who: Principal = Depends(principal)) -> list[dict[str, Any]]:
        """Each serving version whose descriptor names a keep-alive policy, and its decision."""
        return [
            {k: v for k, v in asdict(info).items() if k != "tenant"}
            for info in platform.manager.keepalive_decisions()
            if who.may_touch(info.tenant)
        ]

    return api
