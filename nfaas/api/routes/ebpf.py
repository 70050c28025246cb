"""eBPF VNF instances: instantiate on a hook, reconfigure through maps, read counters, terminate.

EVE025 6.6.1 (use case #6): the operator instantiates an onboarded eBPF
function on an interface; the function's owner (and the operator) then
reconfigures it live by writing its configuration maps -- one entry is, for
the example firewall, one rule -- and reads its counters. Errors, the
verifier's refusal included, are problem documents from ``api.problems``.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from nfaas.api.auth import Principal
from nfaas.ebpf.instances import EbpfInstance
from nfaas.ebpf.metrics import counters_json
from nfaas.ebpf.onboarding import read_report
from nfaas.errors import InvalidRequest, NotFound
from nfaas.platform import Platform


class InstanceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    function: str = Field(description="app/function of an onboarded eBPF function")
    version: str | None = Field(None, description="default: the version the function serves")
    interface: str | None = Field(
        None, max_length=15, description="default: the descriptor's hook.interface"
    )
    netns: str | None = Field(None, description="a network namespace from `ip netns`")
    direction: Literal["ingress", "egress"] | None = None
    attach_mode: Literal["generic", "native"] | None = None


class EntryPut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: dict[str, Any]
    value: dict[str, Any]


class EntryDelete(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: dict[str, Any]


def router(platform: Platform, principal: Any) -> APIRouter:
    api = APIRouter(prefix="/api/v1/ebpf", tags=["ebpf"])
    manager = platform.ebpf

    def visible(instance_id: str, who: Principal) -> EbpfInstance:
        instance = manager.get(instance_id)
        if not who.may_touch(instance.tenant):
            raise NotFound(f"no eBPF instance {instance_id}")
        return instance

    @api.post("/instances", status_code=201)
    async def instantiate(
        body: InstanceCreate, who: Principal = Depends(principal)
    ) -> dict[str, Any]:
        """Load, verify and attach (use case #6 steps 4-6); 422 with the verifier's log."""
        who.require_operator("attaching a program to the node's data path")
        app, sep, name = body.function.partition("/")
        if not sep or not app or not name:
            raise InvalidRequest(f"function is app/function, not {body.function!r}")
        instance = await manager.instantiate(
            app,
            name,
            version=body.version,
            interface=body.interface,
            netns=body.netns,
            direction=body.direction,
            mode=body.attach_mode,
        )
        return instance.as_dict()

    @api.get("/instances")
    async def list_instances(who: Principal = Depends(principal)) -> list[dict[str, Any]]:
        return [i.as_dict() for i in manager.instances() if who.may_touch(i.tenant)]

    @api.get("/instances/{instance_id}")
    async def get_instance(instance_id: str, who: Principal = Depends(principal)) -> dict[str, Any]:
        instance = visible(instance_id, who)
        return instance.as_dict() | {"counters": instance.counters_json()}

    @api.delete("/instances/{instance_id}", status_code=204, response_class=Response)
    async def terminate(instance_id: str, who: Principal = Depends(principal)) -> Response:
        """Detach and unload: nothing of the instance stays in the kernel."""
        visible(instance_id, who)
        await manager.terminate(instance_id)
        return Response(status_code=204)

    @api.get("/instances/{instance_id}/counters")
    async def counters(instance_id: str, who: Principal = Depends(principal)) -> dict[str, Any]:
        return visible(instance_id, who).counters_json()

    @api.get("/instances/{instance_id}/maps/{map_name}")
    async def read_map(
        instance_id: str, map_name: str, who: Principal = Depends(principal)
    ) -> dict[str, Any]:
        instance = visible(instance_id, who)
        spec = instance.spec(map_name)
        return {"map": map_name, "role": spec.role, "entries": instance.entries(map_name)}

    @api.put("/instances/{instance_id}/maps/{map_name}/entries")
    async def put_entry(
        instance_id: str, map_name: str, body: EntryPut, who: Principal = Depends(principal)
    ) -> dict[str, Any]:
        """Add or change one entry of a configuration map (EVE025 6.6.1: live reconfiguration)."""
        return visible(instance_id, who).write(map_name, body.key, body.value)

    @api.delete(
        "/instances/{instance_id}/maps/{map_name}/entries", status_code=204, response_class=Response
    )
    async def delete_entry(
        instance_id: str, map_name: str, body: EntryDelete, who: Principal = Depends(principal)
    ) -> Response:
        visible(instance_id, who).remove(map_name, body.key)
        return Response(status_code=204)

    @api.get("/functions/{app}/{name}")
    async def onboarding_report(
        app: str, name: str, version: str | None = None, who: Principal = Depends(principal)
    ) -> dict[str, Any]:
        """What onboarding found: the object's programs and maps, the memory estimate."""
        fv = manager.version(app, name, version)
        if not who.may_touch(fv.tenant) or fv.descriptor.ebpf is None:
            raise NotFound(f"no eBPF function {app}/{name}")
        path = fv.code.compiled_path
        report = read_report(path) if path is not None else {}
        return {"app": app, "function": name, "version": fv.version, **report}

    @api.get("/metrics")
    async def metrics(who: Principal = Depends(principal)) -> dict[str, Any]:
        return counters_json(manager, who.scope)

    return api
