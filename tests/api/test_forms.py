"""One function, every user-space virtualisation form, by changing one descriptor field.

A real platform (no mock backend) onboards one package whose functions share
their code and differ only in ``runtime``: a forked process, a runc
container, a QEMU microVM. Each answers through the platform's HTTP route, and
says where it ran.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from nfaas.api.app import create_asgi
from nfaas.platform import Platform
from nfaas.sandboxes.container import ContainerBackend
from nfaas.sandboxes.microvm.backend import MicrovmBackend
from tests.api.conftest import make_config
from tests.helpers import function_doc, package
from tests.requirements import require

WHERE = """\
import os, platform

def handle(event, context):
    with open("/proc/1/cmdline", "rb") as init:
        first = init.read().split(b"\\0")[0].decode(errors="replace")
    return {"echo": event.text(), "kernel": platform.release(), "init": first,
            "instance": context.instance_id}
"""
FORMS = {"process": ("python", "3.11"), "container": ("python-container", "3.11"),
         "microvm": ("python-vm", "3.11")}  # fmt: skip


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    require(ContainerBackend.availability(), "the container backend")
    require(MicrovmBackend.availability(), "the microVM backend")
    platform = Platform(make_config(tmp_path))
    async with platform:
        transport = httpx.ASGITransport(app=create_asgi(platform))
        async with httpx.AsyncClient(transport=transport, base_url="http://nfaas") as client:
            client.headers["Authorization"] = f"Bearer {platform.operator_token}"
            yield client


async def test_same_code_in_every_form(http: httpx.AsyncClient, tmp_path: Path) -> None:
    functions = [
        function_doc(
            f"in-{form}",
            app="forms",
            runtime=runtime,
            handler="where:handle",
            resources={"memory_mb": 64, "cpu": 0.25},
        )
        for form, runtime in FORMS.items()
    ]
    data = package(
        tmp_path / "src", "forms", functions,
        code={f["name"]: {"where.py": WHERE} for f in functions},
    )  # fmt: skip
    r = await http.post(
        "/api/v1/onboard", content=data, headers={"Content-Type": "application/zip"}
    )
    assert r.status_code == 201, r.text
    seen = {}
    for form in FORMS:
        r = await http.post(f"/fn/forms/in-{form}", content=form.encode(), timeout=60)
        assert r.status_code == 200, r.text
        seen[form] = orjson.loads(r.content)
        assert seen[form]["echo"] == form
    host_kernel = seen["process"]["kernel"]
    assert seen["container"]["kernel"] == host_kernel  # a container shares the host's kernel
    assert seen["microvm"]["kernel"] != host_kernel  # a microVM boots its own
    assert "python" in seen["container"]["init"]  # PID 1 of its own namespace: its init
    assert seen["microvm"]["init"] == "/bin/sh"  # the guest's /init script
    r = await http.get("/api/v1/runtimes/python-vm/3.11")
    artefacts = r.json()["artefacts"]
    assert {"kernel", "rootfs", "boot_parameters", "digest"} <= set(artefacts)


async def test_a_pool_of_restored_vms_serves_the_first_event(tmp_path: Path) -> None:
    require(MicrovmBackend.availability(), "the microVM backend")
    config = dataclasses.replace(make_config(tmp_path), pools_enabled=True)
    async with Platform(config) as platform:
        transport = httpx.ASGITransport(app=create_asgi(platform))
        headers = {"Authorization": f"Bearer {platform.operator_token}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://nfaas", headers=headers
        ) as http:
            body = {"size": 1, "runtime": "python-vm:3.11"}
            assert (await http.put("/api/v1/pools/python-vm-3-11", json=body)).status_code == 200

            async def vm_pool() -> dict[str, object]:
                pools = (await http.get("/api/v1/pools")).json()
                return next(p for p in pools if p["id"] == "python-vm-3-11")

            for _ in range(300):
                if (await vm_pool())["ready"] == 1:
                    break
                await asyncio.sleep(0.1)
            assert (await vm_pool())["ready"] == 1
            fn = function_doc(
                "in-vm", app="pooled", runtime=FORMS["microvm"], handler="where:handle"
            )
            data = package(tmp_path / "src", "pooled", [fn], code={"in-vm": {"where.py": WHERE}})
            r = await http.post(
                "/api/v1/onboard", content=data, headers={"Content-Type": "application/zip"}
            )
            assert r.status_code == 201, r.text
            r = await http.post("/fn/pooled/in-vm", content=b"pooled", timeout=60)
            assert r.status_code == 200, r.text
            assert orjson.loads(r.content)["echo"] == "pooled"
            assert (await vm_pool())["taken"] == 1
