"""The dashboard's JSON: versions with weights, instances, latency over time, events."""

from __future__ import annotations

from pathlib import Path

from tests.canary.kit import running_kit


async def test_the_snapshot_shows_what_ran_as_each_principal_may_see(tmp_path: Path) -> None:
    async with running_kit(tmp_path) as kit:
        await kit.onboard("1.0.0", "v1")
        await kit.onboard("2.0.0", "v2")
        acme = kit.tenant("acme")
        await kit.http.put("/api/v1/functions/demo/fn/policy",
                           json={"weights": {"1.0.0": 80, "2.0.0": 20}}, headers=acme)  # fmt: skip
        await kit.events(200)
        data = (await kit.http.get("/api/v1/dashboard", headers=acme)).json()
        (app,) = data["applications"]
        (fn,) = app["functions"]
        weights = {v["version"]: v["weight"] for v in fn["versions"]}
        assert (app["app"], fn["name"], fn["stable"], weights) == (
            "demo", "fn", "2.0.0", {"1.0.0": 80, "2.0.0": 20},
        )  # fmt: skip
        served = sum(v["stats"]["invocations"] for v in fn["versions"])
        assert served == 200
        assert all(v["stats"]["cold_starts"] == 1 for v in fn["versions"])
        assert data["instancesByBackend"] == {"mock": {"ready": 2}}
        assert set(data["latency"]["series"]) == {"demo/fn@1.0.0", "demo/fn@2.0.0"}
        point = data["latency"]["series"]["demo/fn@1.0.0"][-1]
        assert sum(point["counts"]) > 100 and len(point["counts"]) == len(
            data["latency"]["boundsMs"]
        )
        assert "node" not in data  # the node is the operator's
        types = {e["notificationType"] for e in data["events"]}
        assert {"InstanceCreated", "VersionPolicyChanged", "PackageOnboarded"} <= types
        other = (await kit.http.get("/api/v1/dashboard", headers=kit.tenant("globex"))).json()
        assert (other["applications"], other["instances"], other["events"]) == ([], [], [])
        operator = (await kit.http.get("/api/v1/dashboard", headers=kit.operator)).json()
        assert operator["node"]["memory_mb"] == 4096 and operator["pools"] == []
        assert (await kit.http.get("/api/v1/dashboard")).status_code == 401


async def test_the_page_and_its_files_are_served_and_nothing_else(tmp_path: Path) -> None:
    async with running_kit(tmp_path) as kit:
        page = await kit.http.get("/dashboard")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<script src="/dashboard/app.js">' in page.text
        js = await kit.http.get("/dashboard/app.js")
        assert js.headers["content-type"].startswith("text/javascript")
        assert (await kit.http.get("/dashboard/style.css")).status_code == 200
        for path in ("/dashboard/../platform.py", "/dashboard/history.py", "/dashboard/x"):
            assert (await kit.http.get(path)).status_code == 404
