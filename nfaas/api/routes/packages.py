"""Package management, named as ETSI SOL005 names it (``/vnf_packages``), plus one-shot onboarding."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from nfaas.api.auth import Principal
from nfaas.api.body import read_body
from nfaas.catalog.onboarding import usage_state
from nfaas.catalog.store import PackageRecord
from nfaas.errors import Conflict
from nfaas.platform import Platform


class PackagePatch(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    operational_state: Literal["ENABLED", "DISABLED"] = Field(alias="operationalState")


def package_json(record: PackageRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "tenant": record.tenant,
        "kind": record.kind,
        "appName": record.app,
        "version": record.version,
        "onboardingState": record.onboarding_state,
        "operationalState": record.operational_state,
        "usageState": usage_state(record),
        "checksum": {"algorithm": "SHA-256", "hash": record.sha256} if record.sha256 else None,
        "functions": record.functions,
        "onboardingFailureDetails": {"detail": record.error} if record.error else None,
        "createdAt": record.created_at,
        "updatedAt": record.updated_at,
    }


def router(platform: Platform, principal: Any) -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["packages"])
    onboarding = platform.onboarding
    limit = platform.config.max_package_bytes

    @api.post("/vnf_packages", status_code=201)
    async def create_package(who: Principal = Depends(principal)) -> dict[str, Any]:
        """Create an empty package resource (SOL005: onboardingState CREATED)."""
        return package_json(onboarding.create(who.tenant))

    @api.get("/vnf_packages")
    async def list_packages(who: Principal = Depends(principal)) -> list[dict[str, Any]]:
        return [package_json(p) for p in platform.store.list_packages(who.scope)]

    @api.get("/vnf_packages/{package_id}")
    async def get_package(package_id: str, who: Principal = Depends(principal)) -> dict[str, Any]:
        return package_json(onboarding.get(package_id, who.scope))

    @api.put("/vnf_packages/{package_id}/package_content", status_code=202)
    async def upload_content(
        package_id: str, request: Request, who: Principal = Depends(principal)
    ) -> dict[str, Any]:
        """Upload the zip and onboard it; the answer is the package in its final state."""
        onboarding.get(package_id, who.scope)
        data = await read_body(request, limit, "package")
        return package_json(await onboarding.upload(package_id, data, who.scope))

    @api.get("/vnf_packages/{package_id}/package_content")
    async def get_content(package_id: str, who: Principal = Depends(principal)) -> Response:
        record = onboarding.get(package_id, who.scope)
        if record.sha256 is None:
            raise Conflict(f"package {package_id} has no content ({record.onboarding_state})")
        return Response(platform.blobs.get(record.sha256), media_type="application/zip")

    @api.patch("/vnf_packages/{package_id}")
    async def patch_package(
        package_id: str, patch: PackagePatch, who: Principal = Depends(principal)
    ) -> dict[str, Any]:
        record = await platform.set_package_state(package_id, patch.operational_state, who.scope)
        return package_json(record)

    @api.delete("/vnf_packages/{package_id}", status_code=204)
    async def delete_package(package_id: str, who: Principal = Depends(principal)) -> Response:
        await onboarding.delete(package_id, who.scope)
        return Response(status_code=204)

    @api.post("/onboard", status_code=201)
    async def onboard(request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
        """Create and onboard in one step (use case #1); a refused package leaves nothing behind."""
        data = await read_body(request, limit, "package")
        return package_json(await onboarding.onboard(data, who.tenant, expect="application"))

    @api.post("/function_packages", status_code=201)
    async def onboard_function(
        request: Request, who: Principal = Depends(principal)
    ) -> dict[str, Any]:
        """Onboard a function package: a new version of one function (use case #2)."""
        data = await read_body(request, limit, "package")
        return package_json(await onboarding.onboard(data, who.tenant, expect="function"))

    return api
