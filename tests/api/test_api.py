"""The REST API and the triggers over a platform whose sandboxes are the mock backend."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx

from nfaas.api.app import create_asgi
from nfaas.platform import Platform
from nfaas.sandboxes.mock import MockBackend
from tests.api.conftest import Api, make_config
from tests.helpers import function_doc, package


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def onboard(
    api: Api, data: bytes, headers: dict[str, str], path: str = "/api/v1/onboard"
) -> httpx.Response:
    return await api.http.post(
        path, content=data, headers=headers | {"Content-Type": "application/zip"}
    )


async def test_onboard_list_and_invoke(api: Api, tmp_path: Path) -> None:
    acme = api.tenant("acme")
    data = package(
        tmp_path,
        "demo",
        [function_doc("echo", triggers=[{"type": "http", "path": "/hook", "methods": ["POST"]}])],
    )
    r = await onboard(api, data, acme)
    assert r.status_code == 201, r.text
    pkg = r.json()
    assert (pkg["onboardingState"], pkg["operationalState"], pkg["usageState"]) == (
        "ONBOARDED",
        "ENABLED",
        "IN_USE",
    )
    fns = (await api.http.get("/api/v1/functions", headers=acme)).json()
    assert [(f["app"], f["name"], f["currentVersion"]) for f in fns] == [("demo", "echo", "1.0.0")]
    r = await api.http.post("/fn/demo/echo", content=b"ping")
    assert (r.status_code, r.content) == (200, b"ping")
    r = await api.http.post("/hook", content=b"custom")
    assert (r.status_code, r.content) == (200, b"custom")
    r = await api.http.get("/hook")
    assert r.status_code == 405 and "GET is not bound" in r.json()["detail"]
    r = await api.http.post("/api/v1/functions/demo/echo/invoke", content=b"cli", headers=acme)
    assert r.content == b"cli"
    instances = (await api.http.get("/api/v1/instances", headers=acme)).json()
    assert len(instances) == 1 and instances[0]["function"] == "echo"
    metrics = (await api.http.get("/api/v1/metrics", headers=acme)).json()["functions"][
        "demo/echo@1.0.0"
    ]
    assert metrics["invocations"] == 3 and metrics["cold_starts"] == 1
    assert (await api.http.get("/metrics")).status_code == 401
    assert (await api.http.get("/metrics", headers=acme)).status_code == 403
    prom = (await api.http.get("/metrics", headers=api.operator)).text
    assert (
        'nfaas_invocations_total{app="demo",function="echo",outcome="ok",trigger="http",version="1.0.0"} 2.0'
        in prom
    )


async def test_tokens_are_required_and_tenants_are_isolated(api: Api, tmp_path: Path) -> None:
    r = await api.http.get("/api/v1/vnf_packages")
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = await api.http.get("/api/v1/vnf_packages", headers={"Authorization": "Bearer nfaas_wrong"})
    assert (r.status_code, r.json()["detail"]) == (401, "unknown token")
    acme, other = api.tenant("acme"), api.tenant("globex")
    pkg = (await onboard(api, package(tmp_path, "demo", [function_doc("echo")]), acme)).json()
    assert (
        await api.http.get(f"/api/v1/vnf_packages/{pkg['id']}", headers=other)
    ).status_code == 404
    assert (await api.http.get("/api/v1/vnf_packages", headers=other)).json() == []
    assert (await api.http.get("/api/v1/functions", headers=other)).json() == []
    r = await api.http.post("/api/v1/functions/demo/echo/invoke", content=b"x", headers=other)
    assert r.status_code == 404
    r = await api.http.patch(
        f"/api/v1/vnf_packages/{pkg['id']}", json={"operationalState": "DISABLED"}, headers=other
    )
    assert r.status_code == 404
    # The operator sees everything; a tenant may not manage runtimes.
    assert len((await api.http.get("/api/v1/vnf_packages", headers=api.operator)).json()) == 1
    r = await api.http.post(
        "/api/v1/runtimes", json={"name": "go", "version": "1", "backend": "process"}, headers=acme
    )
    assert r.status_code == 403


async def test_refused_packages_leave_nothing_behind(api: Api, tmp_path: Path) -> None:
    acme = api.tenant("acme")
    before = (await api.http.get("/api/v1/vnf_packages", headers=api.operator)).json()
    r = await onboard(api, b"this is not a zip", acme)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    bad_runtime = package(tmp_path / "a", "demo", [function_doc("echo", runtime=("cobol", "85"))])
    r = await onboard(api, bad_runtime, acme)
    assert r.status_code == 422
    assert "runtime cobol:85 is not in the runtime repository" in r.json()["detail"]
    assert (await api.http.get("/api/v1/vnf_packages", headers=api.operator)).json() == before
    assert (await api.http.get("/api/v1/functions", headers=api.operator)).json() == []
    good = package(tmp_path / "b", "demo", [function_doc("echo")])
    assert (await onboard(api, good, acme)).status_code == 201
    r = await onboard(api, good, acme)
    assert r.status_code == 409 and "already onboarded" in r.json()["detail"]
    assert len((await api.http.get("/api/v1/vnf_packages", headers=acme)).json()) == 1
    r = await api.http.post("/fn/demo/echo", content=b"still serving")
    assert r.content == b"still serving"


async def test_sol005_flow_and_package_states(api: Api, tmp_path: Path) -> None:
    acme = api.tenant("acme")
    created = (await api.http.post("/api/v1/vnf_packages", headers=acme)).json()
    assert created["onboardingState"] == "CREATED"
    data = package(tmp_path, "demo", [function_doc("echo")])
    r = await api.http.put(
        f"/api/v1/vnf_packages/{created['id']}/package_content", content=data, headers=acme
    )
    assert r.status_code == 202 and r.json()["onboardingState"] == "ONBOARDED"
    content = await api.http.get(
        f"/api/v1/vnf_packages/{created['id']}/package_content", headers=acme
    )
    assert content.content == data
    r = await api.http.delete(f"/api/v1/vnf_packages/{created['id']}", headers=acme)
    assert r.status_code == 409 and "disable it first" in r.json()["detail"]
    r = await api.http.patch(
        f"/api/v1/vnf_packages/{created['id']}", json={"operationalState": "DISABLED"}, headers=acme
    )
    assert r.json()["usageState"] == "NOT_IN_USE"
    assert (await api.http.post("/fn/demo/echo", content=b"x")).status_code == 404
    assert (
        await api.http.delete(f"/api/v1/vnf_packages/{created['id']}", headers=acme)
    ).status_code == 204
    assert (await api.http.get("/api/v1/functions", headers=acme)).json() == []
    # A failed upload keeps the reason on the resource (SOL005 ERROR state).
    failed = (await api.http.post("/api/v1/vnf_packages", headers=acme)).json()
    r = await api.http.put(
        f"/api/v1/vnf_packages/{failed['id']}/package_content", content=b"junk", headers=acme
    )
    assert r.status_code == 422
    state = (await api.http.get(f"/api/v1/vnf_packages/{failed['id']}", headers=acme)).json()
    assert state["onboardingState"] == "ERROR" and state["onboardingFailureDetails"]["detail"]


async def test_function_errors_are_problems_and_others_keep_serving(
    api: Api, tmp_path: Path
) -> None:
    acme = api.tenant("acme")
    data = package(tmp_path, "demo", [function_doc("boom"), function_doc("echo")])
    await onboard(api, data, acme)
    r = await api.http.post("/fn/demo/boom", content=b"x")
    assert r.status_code == 500
    assert (
        r.json()["title"] == "Function raised an exception" and "bad reading" in r.json()["detail"]
    )
    assert (await api.http.post("/fn/demo/echo", content=b"ok")).content == b"ok"
    r = await api.http.post("/fn/demo/nothing", content=b"x")
    assert r.status_code == 404


async def test_oversized_event_and_burst_overload(api: Api, tmp_path: Path) -> None:
    acme = api.tenant("acme")
    fn = function_doc(
        "slow", scaling={"instance_threshold": 1, "queue_size": 0, "max_quick_start": 0}
    )
    await onboard(api, package(tmp_path, "demo", [fn]), acme)
    r = await api.http.post(
        "/fn/demo/slow", content=b"x" * (api.platform.config.max_event_bytes + 1)
    )
    assert r.status_code == 413
    results = await asyncio.gather(
        *(api.http.post("/fn/demo/slow", content=b"0.3") for _ in range(3))
    )
    codes = sorted(r.status_code for r in results)
    assert codes == [200, 429, 429]
    overloaded = next(r for r in results if r.status_code == 429)
    assert (
        overloaded.headers["retry-after"] == "1" and "queue size 0" in overloaded.json()["detail"]
    )


async def test_function_package_update_takes_over(api: Api, tmp_path: Path) -> None:
    acme = api.tenant("acme")
    await onboard(
        api, package(tmp_path / "v1", "demo", [function_doc("echo", handler="echo")]), acme
    )
    assert (await api.http.post("/fn/demo/echo", content=b"abc")).content == b"abc"
    update = package(
        tmp_path / "v2",
        "demo",
        [function_doc("echo", version="2.0.0", handler="upper")],
        application=False,
    )
    r = await onboard(api, update, acme, "/api/v1/function_packages")
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "function"
    assert (await api.http.post("/fn/demo/echo", content=b"abc")).content == b"ABC"
    versions = (await api.http.get("/api/v1/functions/demo/echo/versions", headers=acme)).json()
    assert [(v["version"], v["current"]) for v in versions] == [("1.0.0", False), ("2.0.0", True)]
    await asyncio.sleep(0.2)
    assert {
        i["version"] for i in (await api.http.get("/api/v1/instances", headers=acme)).json()
    } == {"2.0.0"}
    # An application package where a function package is expected is refused.
    r = await onboard(
        api,
        package(tmp_path / "v3", "demo", [function_doc("echo")], version="3.0.0"),
        acme,
        "/api/v1/function_packages",
    )
    assert r.status_code == 422 and "expected a function package" in r.json()["detail"]


async def test_udp_tcp_and_timer_triggers(api: Api, tmp_path: Path) -> None:
    acme = api.tenant("acme")
    udp_port, tcp_port = free_port(), free_port(socket.SOCK_STREAM)
    fns = [
        function_doc(
            "echo", triggers=[{"type": "udp", "port": udp_port}, {"type": "tcp", "port": tcp_port}]
        ),
        function_doc("upper", triggers=[{"type": "timer", "interval_s": 0.05}]),
    ]
    assert (await onboard(api, package(tmp_path, "demo", fns), acme)).status_code == 201
    loop = asyncio.get_running_loop()
    received: asyncio.Future[bytes] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            received.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", udp_port))
    transport.sendto(b"datagram")
    assert await asyncio.wait_for(received, 5) == b"datagram"
    transport.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", tcp_port)
    writer.write(b"line one\nline two\n")
    assert await reader.readline() == b"line one\n"
    assert await reader.readline() == b"line two\n"
    writer.close()
    await asyncio.sleep(0.3)
    stats = api.platform.telemetry.as_json()
    assert stats["demo/upper@1.0.0"]["invocations"] >= 2
    triggers = (await api.http.get("/api/v1/triggers", headers=acme)).json()
    assert {t["state"] for t in triggers} == {"listening"}


async def test_port_held_by_another_application_is_refused(api: Api, tmp_path: Path) -> None:
    port = free_port()
    acme = api.tenant("acme")
    a = package(
        tmp_path / "a",
        "first",
        [function_doc("echo", app="first", triggers=[{"type": "udp", "port": port}])],
    )
    b = package(
        tmp_path / "b",
        "second",
        [function_doc("echo", app="second", triggers=[{"type": "udp", "port": port}])],
    )
    assert (await onboard(api, a, acme)).status_code == 201
    r = await onboard(api, b, acme)
    assert (
        r.status_code == 409
        and f"udp port {port} is already bound to first/echo" in r.json()["detail"]
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        taken = squatter.getsockname()[1]
        c = package(
            tmp_path / "c",
            "third",
            [function_doc("echo", app="third", triggers=[{"type": "udp", "port": taken}])],
        )
        r = await onboard(api, c, acme)
        assert r.status_code == 409 and "in use by another program" in r.json()["detail"]


async def test_state_survives_a_restart(tmp_path: Path) -> None:
    def make() -> Platform:
        return Platform(
            make_config(tmp_path), backends={"mock": MockBackend({"echo": lambda e: e.body})}
        )

    first = make()
    first.runtimes.register_builtins()
    first.runtimes.create("mock", "1", "mock")
    async with first:
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_asgi(first)), base_url="http://x"
        )
        token = {"Authorization": f"Bearer {first.operator_token}"}
        r = await http.post(
            "/api/v1/onboard",
            content=package(tmp_path / "src", "demo", [function_doc("echo")]),
            headers=token,
        )
        assert r.status_code == 201
        await http.put(
            "/api/v1/pools/mock-pool", json={"size": 0, "runtime": "mock:1"}, headers=token
        )
    async with make() as second:
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_asgi(second)), base_url="http://x"
        )
        assert (await http.post("/fn/demo/echo", content=b"back")).content == b"back"
        token = {"Authorization": f"Bearer {second.operator_token}"}
        pools = (await http.get("/api/v1/pools", headers=token)).json()
        assert "mock-pool" in [p["id"] for p in pools]


async def test_functions_never_see_the_callers_credentials(api: Api, tmp_path: Path) -> None:
    import json

    api.backend.handlers["headers"] = lambda e: json.dumps(e.meta.get("headers", {})).encode()
    acme = api.tenant("acme")
    await onboard(api, package(tmp_path, "demo", [function_doc("headers")]), acme)
    secret = {"Authorization": "Bearer nfaas_secret", "Cookie": "session=1", "X-Device": "t-1"}
    for r in (
        await api.http.post("/fn/demo/headers", headers=secret),
        await api.http.post(
            "/api/v1/functions/demo/headers/invoke", headers=api.operator | {"Cookie": "c=1"}
        ),
    ):
        seen = {k.lower() for k in r.json()}
        assert not seen & {"authorization", "cookie", "proxy-authorization"}, seen
    assert (await api.http.post("/fn/demo/headers", headers=secret)).json()["x-device"] == "t-1"


async def test_re_enabling_an_app_whose_port_was_taken_is_refused(api: Api, tmp_path: Path) -> None:
    port = free_port()
    acme, globex = api.tenant("acme"), api.tenant("globex")
    udp = [{"type": "udp", "port": port}]
    a = (
        await onboard(
            api,
            package(tmp_path / "a", "first", [function_doc("echo", app="first", triggers=udp)]),
            acme,
        )
    ).json()
    r = await api.http.patch(
        f"/api/v1/vnf_packages/{a['id']}", json={"operationalState": "DISABLED"}, headers=acme
    )
    assert r.status_code == 200
    b = package(tmp_path / "b", "second", [function_doc("upper", app="second", triggers=udp)])
    assert (await onboard(api, b, globex)).status_code == 201
    r = await api.http.patch(
        f"/api/v1/vnf_packages/{a['id']}", json={"operationalState": "ENABLED"}, headers=acme
    )
    assert (
        r.status_code == 409 and f"udp port {port} is bound to second/upper" in r.json()["detail"]
    )
    state = (await api.http.get(f"/api/v1/vnf_packages/{a['id']}", headers=acme)).json()
    assert state["operationalState"] == "DISABLED"
    triggers = (await api.http.get("/api/v1/triggers", headers=globex)).json()
    assert [(t["function"], t["state"]) for t in triggers] == [("upper", "listening")]


async def test_deleting_a_runtime_closes_its_pool(api: Api) -> None:
    op = api.operator
    r = await api.http.post(
        "/api/v1/runtimes", json={"name": "tiny", "version": "1", "backend": "mock"}, headers=op
    )
    assert r.status_code == 201
    r = await api.http.put(
        "/api/v1/pools/tiny-pool", json={"size": 2, "runtime": "tiny:1"}, headers=op
    )
    assert r.status_code == 200
    for _ in range(100):
        if api.platform.pools["tiny-pool"].snapshot().ready == 2:
            break
        await asyncio.sleep(0.01)
    reserved = api.platform.capacity.memory_reserved_mb
    assert (await api.http.delete("/api/v1/runtimes/tiny/1", headers=op)).status_code == 204
    assert "tiny-pool" not in api.platform.pools
    assert api.platform.capacity.memory_reserved_mb < reserved
    assert (await api.http.get("/api/v1/runtimes/tiny/1", headers=op)).status_code == 404


async def test_tokens_can_be_listed_and_revoked_at_once(api: Api) -> None:
    acme = api.tenant("acme")
    assert (await api.http.get("/api/v1/whoami", headers=acme)).json()["tenant"] == "acme"
    assert (await api.http.get("/api/v1/tokens", headers=acme)).status_code == 403
    tokens = (await api.http.get("/api/v1/tokens", headers=api.operator)).json()
    assert {(t["tenant"], t["role"]) for t in tokens} == {
        ("operator", "operator"),
        ("acme", "tenant"),
    }
    assert all("token" not in t for t in tokens)
    acme_id = next(t["id"] for t in tokens if t["tenant"] == "acme")
    assert (
        await api.http.delete(f"/api/v1/tokens/{acme_id}", headers=api.operator)
    ).status_code == 204
    assert (await api.http.get("/api/v1/whoami", headers=acme)).status_code == 401
    op_id = next(t["id"] for t in tokens if t["role"] == "operator")
    r = await api.http.delete(f"/api/v1/tokens/{op_id}", headers=api.operator)
    assert r.status_code == 409 and "last operator token" in r.json()["detail"]


async def test_fn_route_takes_the_methods_the_descriptor_names(api: Api, tmp_path: Path) -> None:
    fns = [
        function_doc("echo", triggers=[{"type": "http", "methods": ["POST"]}]),
        function_doc("upper"),  # no HTTP trigger: /fn takes any method
    ]
    await onboard(api, package(tmp_path, "demo", fns), api.tenant("acme"))
    assert (await api.http.post("/fn/demo/echo", content=b"x")).status_code == 200
    r = await api.http.get("/fn/demo/echo")
    assert r.status_code == 405 and "bound: POST" in r.json()["detail"]
    assert (await api.http.put("/fn/demo/upper", content=b"x")).content == b"X"
