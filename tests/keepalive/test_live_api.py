"""The live platform: a descriptor names a policy, the API shows its decision (issue 7)."""

from __future__ import annotations

from pathlib import Path

from tests.api.conftest import Api
from tests.api.test_api import onboard
from tests.helpers import function_doc, package
from tests.packages import kit


def doc(keepalive: dict[str, object]) -> dict[str, object]:
    return function_doc("echo", scaling={"keepalive": keepalive})


async def test_descriptor_names_a_policy_and_the_api_shows_its_decision(
    api: Api, tmp_path: Path
) -> None:
    acme, other = api.tenant("acme"), api.tenant("other")
    spec = {"policy": "hybrid", "parameters": {"range_min": 120}}
    r = await onboard(api, package(tmp_path, "demo", [doc(spec)]), acme)
    assert r.status_code == 201, r.text
    assert (await api.http.post("/fn/demo/echo", content=b"hi")).status_code == 200
    (row,) = (await api.http.get("/api/v1/keepalive", headers=acme)).json()
    assert (row["app"], row["function"], row["policy"], row["mode"]) == (
        "demo", "echo", "hybrid", "default",
    )  # fmt: skip
    assert row["keepalive_s"] == 120 * 60 and row["prewarm_s"] == 0 and row["ready"] == 1
    assert 0 < row["window_end_in_s"] <= 120 * 60
    assert (await api.http.get("/api/v1/keepalive", headers=other)).json() == []
    text = (await api.http.get("/metrics", headers=api.operator)).text
    assert 'nfaas_keepalive_window_seconds{app="demo",function="echo"' in text


def hello_with(keepalive: str) -> bytes:
    """The kit's valid package, its hello function naming a keep-alive policy."""
    yaml = kit.HELLO_YAML.replace(
        "max_quick_start: 2}", f"max_quick_start: 2, keepalive: {keepalive}}}"
    )
    return kit.package(kit.app_files({"Definitions/hello.yaml": yaml}))


async def test_out_of_range_parameter_is_refused_at_onboarding_and_nothing_stored(
    api: Api,
) -> None:
    acme = api.tenant("acme")
    r = await onboard(api, hello_with("{policy: forecast, parameters: {tail_quantile: 2}}"), acme)
    assert r.status_code == 422
    assert "tail_quantile must be in [0.5, 0.9999], not 2" in r.json()["detail"]
    assert "scaling.keepalive" in r.json()["detail"]
    assert (await api.http.get("/api/v1/functions", headers=acme)).json() == []
    assert (await api.http.get("/api/v1/keepalive", headers=acme)).json() == []


async def test_unknown_policy_is_refused_with_the_known_ones(api: Api) -> None:
    r = await onboard(api, hello_with("{policy: lru}"), api.tenant("acme"))
    assert r.status_code == 422
    assert "no keep-alive policy named 'lru' (known: fixed, forecast, hybrid, never)" in r.text
