"""The HTTP trigger path as ASGI: client disconnects, unknown paths, routing to the API."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from nfaas.api.app import create_asgi
from tests.api.conftest import Api
from tests.api.test_api import onboard
from tests.helpers import function_doc, package


async def test_a_client_that_leaves_cancels_its_event(api: Api, tmp_path: Path) -> None:
    await onboard(api, package(tmp_path, "demo", [function_doc("slow")]), api.tenant("acme"))
    gateway = create_asgi(api.platform)
    messages = [{"type": "http.request", "body": b"5", "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(0.2)  # the client hangs up while the function still runs
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/fn/demo/slow",
        "query_string": b"",
        "headers": [],
    }
    started = time.monotonic()
    await asyncio.wait_for(gateway(scope, receive, send), 3)
    assert time.monotonic() - started < 2, "the 5 s event should have been cancelled"
    assert sent == []
    assert api.platform.telemetry.as_json()["demo/slow@1.0.0"]["outcomes"] == {"error": 1}
    # Nothing is left holding the slot.
    instances = list(api.platform.manager.instances())
    assert [i.in_flight for i in instances] == [0]


async def test_unknown_paths_and_api_paths_behind_the_gateway(api: Api) -> None:
    r = await api.http.get("/no/such/thing")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert (await api.http.get("/fn/only-an-app")).status_code == 404
    assert (await api.http.get("/healthz")).json() == {"status": "running"}
