"""Function chaining on a platform whose sandboxes are the mock backend.

detect -> alert -> archive: a function's result is the next function's event,
hops run in the background, and their latencies are metrics.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from nfaas.api.app import create_asgi
from nfaas.platform import Platform
from nfaas.sandboxes.base import Event
from nfaas.sandboxes.mock import MockBackend
from nfaas.triggers.chain import MAX_HOPS
from tests.api.conftest import make_config
from tests.helpers import function_doc, package
from tests.triggers.conftest import until

pytestmark = pytest.mark.timeout(30)


class Seen:
    def __init__(self) -> None:
        self.events: dict[str, list[Event]] = {}

    def handler(self, name: str, answer: object) -> object:
        def handle(event: Event) -> bytes:
            self.events.setdefault(name, []).append(event)
            return answer(event) if callable(answer) else answer  # type: ignore[no-any-return]

        return handle


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[Platform, httpx.AsyncClient, Seen]]:
    seen = Seen()
    backend = MockBackend({
        "detect": seen.handler("detect", lambda e: b"ANOMALY " + e.body if b"spike" in e.body else b""),
        "alert": seen.handler("alert", lambda e: b"camera on: " + e.body),
        "archive": seen.handler("archive", b"stored"),
        "loop": seen.handler("loop", lambda e: e.body),
    })  # fmt: skip
    platform = Platform(make_config(tmp_path), backends={"mock": backend})
    platform.runtimes.register_builtins()
    platform.runtimes.create("mock", "1", "mock", "in-process test backend")
    async with platform:
        transport = httpx.ASGITransport(app=create_asgi(platform))
        async with httpx.AsyncClient(transport=transport, base_url="http://nfaas") as http:
            yield platform, http, seen


async def onboard(platform: Platform, http: httpx.AsyncClient, data: bytes) -> None:
    token = {"Authorization": f"Bearer {platform.operator_token}"}
    r = await http.post(
        "/api/v1/onboard", content=data, headers=token | {"Content-Type": "application/zip"}
    )
    assert r.status_code == 201, r.text


async def test_results_flow_down_the_chain(
    live: tuple[Platform, httpx.AsyncClient, Seen], tmp_path: Path
) -> None:
    platform, http, seen = live
    fns = [
        function_doc(
            "detect", app="grid", triggers=[{"type": "http"}], chain=[{"function": "alert"}]
        ),
        function_doc("alert", app="grid", chain=[{"function": "archive", "when": "always"}]),
        function_doc("archive", app="grid"),
    ]
    await onboard(platform, http, package(tmp_path, "grid", fns))
    r = await http.post("/fn/grid/detect", content=b"steady 5.0")
    assert (r.status_code, r.content) == (200, b"")
    r = await http.post("/fn/grid/detect", content=b"spike 99.0")
    assert (r.status_code, r.content) == (200, b"ANOMALY spike 99.0")  # not waiting for the chain
    await until(lambda: len(seen.events.get("archive", [])) == 1)
    alert = seen.events["alert"][0]
    assert (alert.trigger, alert.body) == ("chain", b"ANOMALY spike 99.0")
    assert alert.meta["chain"]["head"] == "detect" and alert.meta["chain"]["hop"] == 1
    archive = seen.events["archive"][0]
    assert archive.body == b"camera on: ANOMALY spike 99.0"
    assert archive.meta["chain"]["hop"] == 2 and archive.meta["chain"]["from"] == "alert"
    assert archive.meta["chain"]["id"] == alert.meta["chain"]["id"]
    chains = platform.router.chains
    await until(lambda: chains.ended.get(("grid", "detect"), [0])[0] == 1)
    assert chains.hops == {("grid", "detect", "alert"): 1, ("grid", "alert", "archive"): 1}
    prom = (
        await http.get("/metrics", headers={"Authorization": f"Bearer {platform.operator_token}"})
    ).text
    assert 'nfaas_chain_hop_seconds_count{app="grid",source="detect",target="alert"} 1.0' in prom
    assert 'nfaas_chain_seconds_count{app="grid",head="detect"} 1.0' in prom


async def test_a_loop_stops_after_max_hops(
    live: tuple[Platform, httpx.AsyncClient, Seen], tmp_path: Path
) -> None:
    platform, http, seen = live
    fns = [
        function_doc("loop", app="ring", triggers=[{"type": "http"}], chain=[{"function": "loop"}])
    ]
    await onboard(platform, http, package(tmp_path, "ring", fns))
    await http.post("/fn/ring/loop", content=b"round")
    await until(lambda: len(seen.events.get("loop", [])) == MAX_HOPS + 1)
    await asyncio.sleep(0.2)
    assert len(seen.events["loop"]) == MAX_HOPS + 1
    prom = (
        await http.get("/metrics", headers={"Authorization": f"Bearer {platform.operator_token}"})
    ).text
    assert 'nfaas_chain_dropped_total{app="ring",reason="max_hops"} 1.0' in prom


async def test_a_missing_next_function_is_counted(
    live: tuple[Platform, httpx.AsyncClient, Seen], tmp_path: Path
) -> None:
    platform, http, _ = live
    fns = [
        function_doc(
            "detect", app="half", triggers=[{"type": "http"}], chain=[{"function": "nowhere"}]
        )
    ]
    await onboard(platform, http, package(tmp_path, "half", fns))
    await http.post("/fn/half/detect", content=b"spike")
    prom_url, token = "/metrics", {"Authorization": f"Bearer {platform.operator_token}"}

    async def failed() -> str:
        return (await http.get(prom_url, headers=token)).text

    for _ in range(100):
        if 'nfaas_chain_dropped_total{app="half",reason="failed"} 1.0' in await failed():
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the failed hop was not counted")


async def test_after_limits_the_chain_to_some_triggers(
    live: tuple[Platform, httpx.AsyncClient, Seen], tmp_path: Path
) -> None:
    platform, http, seen = live
    link = {"function": "alert", "after": ["mqtt"]}
    fns = [
        function_doc("detect", app="quiet", triggers=[{"type": "http"}], chain=[link]),
        function_doc("alert", app="quiet"),
    ]
    await onboard(platform, http, package(tmp_path, "quiet", fns))
    r = await http.post("/fn/quiet/detect", content=b"spike over http")
    assert r.content == b"ANOMALY spike over http"
    await asyncio.sleep(0.2)
    assert "alert" not in seen.events
