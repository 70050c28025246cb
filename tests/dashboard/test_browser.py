"""The dashboard end to end: a real server, real invocations, headless Chromium.

The distribution's ``chromium`` (scripts/setup installs it) loads the page with
``--dump-dom`` after a virtual-time budget long enough for a few polls, and
takes a screenshot, saved under the test's tmp_path.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import httpx

from tests.canary.kit import running_kit, serving
from tests.requirements import require

CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--no-first-run", "--hide-scrollbars", "--virtual-time-budget=6000"]  # fmt: skip


def chromium() -> str:
    path = shutil.which("chromium")
    require((path is not None, "no chromium on PATH"), "the dashboard's browser test")
    assert path is not None
    return path


async def run_chromium(*args: str, profile: Path) -> str:
    process = await asyncio.create_subprocess_exec(
        chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(60):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


def text(dom: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


async def test_the_dashboard_shows_live_versions_instances_latency_and_events(
    tmp_path: Path,
) -> None:
    chromium()
    async with running_kit(tmp_path) as kit, serving(kit.platform) as url:
        await kit.onboard("1.0.0", "v1")
        await kit.onboard("2.0.0", "v2")
        acme = kit.tenant("acme")
        r = await kit.http.put("/api/v1/functions/demo/fn/policy",
                               json={"weights": {"1.0.0": 80, "2.0.0": 20}}, headers=acme)  # fmt: skip
        assert r.status_code == 200
        async with httpx.AsyncClient(base_url=url) as client:
            for i in range(60):
                assert (await client.post("/fn/demo/fn", content=f"{i}")).status_code == 200
        token = acme["Authorization"].removeprefix("Bearer ")
        page = f"{url}/dashboard#token={token}"
        dom = await run_chromium("--dump-dom", page, profile=tmp_path / "profile")
        shot = tmp_path / "dashboard.png"
        await run_chromium(f"--screenshot={shot}", "--window-size=1400,1100", page,
                           profile=tmp_path / "profile")  # fmt: skip
    shown = text(dom)
    assert 'data-state="live"' in dom, shown[:500]
    assert "live · acme" in shown
    assert 'data-version="demo/fn@1.0.0"' in dom and 'data-version="demo/fn@2.0.0"' in dom
    assert re.search(r"demo/fn 1\.0\.0 80% ", shown) and re.search(
        r"demo/fn 2\.0\.0 20% stable", shown
    )
    assert "mock ready 2" in shown  # instances by backend and state
    assert 'data-series="demo/fn@1.0.0"' in dom and "<rect" in dom  # the latency heatmap
    assert 'data-type="InstanceCreated"' in dom and 'data-type="VersionPolicyChanged"' in dom
    assert "globex" not in shown and 'id="node-section" hidden' in dom.replace('=""', "")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
