"""Runtimes (the FRSR, 7.2.1), pools (7.2.3), node capacity, tokens: the operator's resources."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from nfaas.api.auth import Principal
from nfaas.platform import Platform


class RuntimeCreate(BaseModel):
    name: str
    version: str
    backend: str
    description: str = ""
    sandbox_memory_mb: int = Field(16, ge=1, le=65536)


class RuntimePatch(BaseModel):
    description: str | None = None
    sandbox_memory_mb: int | None = Field(None, ge=1, le=65536)


class PoolPut(BaseModel):
    size: int = Field(ge=0, le=256)
    runtime: str | None = Field(None, description="name:version; needed to create a pool")


class NodePatch(BaseModel):
    memory_mb: int | None = Field(None, ge=1)
    cpu: float | None = Field(None, gt=0)


class TokenCreate(BaseModel):
    tenant: str
    role: Literal["tenant", "operator"] = "tenant"
    name: str = ""


def router(platform: Platform, principal: Any) -> APIRouter:
    api = APIRouter(prefix="/api/v1")
    runtimes = platform.runtimes

    @api.get("/runtimes", tags=["runtimes"])
    async def list_runtimes(
        name: str | None = None, who: Principal = Depends(principal)
    ) -> list[dict[str, Any]]:
        return [asdict(r) for r in runtimes.query(name)]

    @api.post("/runtimes", status_code=201, tags=["runtimes"])
    async def create_runtime(
        body: RuntimeCreate, who: Principal = Depends(principal)
    ) -> dict[str, Any]:
        who.require_operator("managing runtimes")
        return asdict(
            runtimes.create(
                body.name, body.version, body.backend, body.description, body.sandbox_memory_mb
            )
        )

    @api.get("/runtimes/{name}/{version}", tags=["runtimes"])
    async def get_runtime(
        name: str, version: str, who: Principal = Depends(principal)
    ) -> dict[str, Any]:
        return asdict(runtimes.get(name, version))

    @api.patch("/runtimes/{name}/{version}", tags=["runtimes"])
    async def patch_runtime(
        name: str, version: str, body: RuntimePatch, who: Principal = Depends(principal)
    ) -> dict[str, Any]:
        who.require_operator("managing runtimes")
        return asdict(
            runtimes.update(
                name,
                version,
                description=body.description,
                sandbox_memory_mb=body.sandbox_memory_mb,
            )
        )

    @api.delete("/runtimes/{name}/{version}", status_code=204, tags=["runtimes"])
    async def delete_runtime(
        name: str, version: str, who: Principal = Depends(principal)
    ) -> Response:
        who.require_operator("managing runtimes")
        await platform.delete_runtime(name, version)
        return Response(status_code=204)

    @api.get("/pools", tags=["pools"])
    async def list_pools(who: Principal = Depends(principal)) -> list[dict[str, Any]]:
        out = []
        for record in platform.store.list_pools():
            pool = platform.pools.get(record.id)
            snap = (
                asdict(pool.snapshot())
                if pool
                else {"id": record.id, "size": record.size, "ready": 0}
            )
            out.append(snap | {"runtime": f"{record.runtime_name}:{record.runtime_version}"})
        return out

    @api.put("/pools/{pool_id}", tags=["pools"])
    async def put_pool(
        pool_id: str, body: PoolPut, who: Principal = Depends(principal)
    ) -> dict[str, Any]:
        who.require_operator("managing pools")
        runtime = tuple(body.runtime.split(":", 1)) if body.runtime else None
        pool = await platform.set_pool(pool_id, body.size, runtime)  # type: ignore[arg-type]
        return asdict(pool.snapshot())

    @api.delete("/pools/{pool_id}", status_code=204, tags=["pools"])
    async def delete_pool(pool_id: str, who: Principal = Depends(principal)) -> Response:
        who.require_operator("managing pools")
        await platform.delete_pool(pool_id)
        return Response(status_code=204)

    @api.get("/node", tags=["node"])
    async def get_node(who: Principal = Depends(principal)) -> dict[str, Any]:
        return platform.capacity.snapshot()

    @api.patch("/node", tags=["node"])
    async def patch_node(body: NodePatch, who: Principal = Depends(principal)) -> dict[str, Any]:
        who.require_operator("changing node capacity")
        platform.capacity.resize(body.memory_mb, body.cpu)
        platform.store.set_setting(
            "capacity", {"memory_mb": platform.capacity.memory_mb, "cpu": platform.capacity.cpu}
        )
        return platform.capacity.snapshot()

    @api.post("/tokens", status_code=201, tags=["auth"])
    async def create_token(
        body: TokenCreate, who: Principal = Depends(principal)
    ) -> dict[str, Any]:
        who.require_operator("creating tokens")
        token = platform.auth.issue(body.tenant, body.role, body.name)
        return {"tenant": body.tenant, "role": body.role, "token": token}

    @api.get("/tokens", tags=["auth"])
    async def list_tokens(who: Principal = Depends(principal)) -> list[dict[str, Any]]:
        who.require_operator("listing tokens")
        return platform.auth.tokens()

    @api.delete("/tokens/{token_id}", status_code=204, tags=["auth"])
    async def revoke_token(token_id: str, who: Principal = Depends(principal)) -> Response:
        who.require_operator("revoking tokens")
        platform.auth.revoke(token_id)
        return Response(status_code=204)

    @api.get("/whoami", tags=["auth"])
    async def whoami(who: Principal = Depends(principal)) -> dict[str, Any]:
        return {"tenant": who.tenant, "role": who.role}

    return api
