"""Issue 2's list of bad input, against a platform with its real sandboxes.

Each: a precise error, the stored state as it was, and the other functions
still served.
"""

from __future__ import annotations

import asyncio
import socket
import stat
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from nfaas.api.app import create_asgi
from nfaas.config import Config
from nfaas.platform import Platform
from tests.helpers import function_doc, package
from tests.packages import kit

FAILING = {
    "raises": "def handle(event, context):\n    raise ValueError('reading out of range')\n",
    "exits": "import os\n\ndef handle(event, context):\n    os._exit(3)\n",
    "loops": "def handle(event, context):\n    while True:\n        pass\n",
    "hogs": "def handle(event, context):\n    blocks = []\n    while True:\n        blocks.append(bytearray(1 << 20))\n",
    "echo": "def handle(event, context):\n    return event.body\n",
    "slow": "import time\n\ndef handle(event, context):\n    time.sleep(0.3)\n    return b'done'\n",
}


@dataclass
class Live:
    platform: Platform
    http: httpx.AsyncClient
    token: dict[str, str]

    async def state(self) -> tuple[object, object, object]:
        get = self.http.get
        return (
            (await get("/api/v1/vnf_packages", headers=self.token)).json(),
            (await get("/api/v1/functions", headers=self.token)).json().__len__(),
            (await get("/api/v1/runtimes", headers=self.token)).json(),
        )

    async def healthy(self) -> None:
        r = await self.http.post("/fn/healthy/echo", content=b"alive")
        assert (r.status_code, r.content) == (200, b"alive")


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    config = Config(
        data_dir=tmp_path / "data", reap_interval_s=0.1, node_memory_mb=8192, node_cpu=2
    )
    async with Platform(config) as platform:
        transport = httpx.ASGITransport(app=create_asgi(platform))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://nfaas", timeout=30
        ) as http:
            token = {"Authorization": f"Bearer {platform.auth.issue('acme')}"}
            fns = [
                function_doc(name, app=app, runtime=("python", "3.11"), handler="handler:handle",
                             resources={"memory_mb": 32, "timeout_s": 1},
                             scaling={"instance_threshold": 1, "queue_size": 1, "queue_timeout_s": 5})
                for app, name in [("healthy", "echo")]
            ]  # fmt: skip
            data = package(
                tmp_path / "healthy", "healthy", fns, code={"echo": {"handler.py": FAILING["echo"]}}
            )
            r = await http.post("/api/v1/onboard", content=data, headers=token)
            assert r.status_code == 201, r.text
            yield Live(platform, http, token)


def _symlink() -> bytes:
    info = kit.entry_info("Files/hello/link", stat.S_IFLNK | 0o777)
    return kit.zip_bytes([*kit_entries(kit.app_files()), (info, b"/etc/passwd")])


def kit_entries(files: dict[str, bytes]) -> list[tuple[str, bytes]]:
    contents = dict(files)
    contents["TOSCA-Metadata/TOSCA.meta"] = kit.tosca_meta()
    contents["demo.mf"] = kit.manifest_text(contents)
    return sorted(contents.items())


def _bomb() -> bytes:
    files = kit.app_files({"Files/hello/big.bin": b"\0" * (32 << 20)})
    return kit.package(files)


def _hash_mismatch() -> bytes:
    files = kit.app_files()
    listed = dict(files)
    listed["Files/hello/hello.py"] = b"something else"
    return kit.package(files, listed=listed)


BAD_PACKAGES: dict[str, tuple[Callable[[], bytes], int, str]] = {
    "corrupt zip": (lambda: kit.package()[:-40], 422, ""),
    "missing file": (lambda: kit.package(listed={**kit.app_files(), "Files/gone.py": b"x"}), 422, "Files/gone.py"),
    "extra file": (lambda: kit.package(extra={"Files/stowaway.sh": b"rm -rf /"}), 422, "Files/stowaway.sh"),
    "hash mismatch": (_hash_mismatch, 422, "Files/hello/hello.py"),
    "unknown hash algorithm": (lambda: kit.package(algorithm="MD5"), 422, "MD5"),
    "path traversal": (lambda: kit.zip_bytes([("../../etc/cron.d/x", b"x"), *kit_entries(kit.app_files())]), 422, "../../etc/cron.d/x"),
    "symlink entry": (_symlink, 422, "Files/hello/link"),
    "zip bomb": (_bomb, 422, "Files/hello/big.bin"),
    "invalid descriptor": (lambda: kit.package(kit.app_files({"Definitions/hello.yaml": kit.HELLO_YAML.replace("instance_threshold: 4", "instance_threshold: -1")})), 422, "scaling.instance_threshold"),
    "unknown runtime": (lambda: kit.package(kit.app_files({"Definitions/tick.yaml": kit.TICK_YAML.replace('version: "3.11"', 'version: "2.7"')})), 422, "python:2.7"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_PACKAGES))
async def test_bad_package_is_refused_and_changes_nothing(live: Live, case: str) -> None:
    make, status, culprit = BAD_PACKAGES[case]
    before = await live.state()
    r = await live.http.post("/api/v1/onboard", content=make(), headers=live.token)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert culprit in r.json()["detail"]
    assert await live.state() == before
    await live.healthy()


async def test_duplicate_onboarding_is_refused(live: Live, tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    hello = kit.HELLO_YAML.replace("port: 9001", f"port: {port}")
    data = kit.package(kit.app_files({"Definitions/hello.yaml": hello}))
    assert (
        await live.http.post("/api/v1/onboard", content=data, headers=live.token)
    ).status_code == 201
    before = await live.state()
    r = await live.http.post("/api/v1/onboard", content=data, headers=live.token)
    assert r.status_code == 409 and "demo version 1.2.0 is already onboarded" in r.json()["detail"]
    assert await live.state() == before
    await live.healthy()


async def onboard_failing(live: Live, tmp_path: Path) -> None:
    names = ["raises", "exits", "loops", "hogs", "slow"]
    fns = [
        function_doc(name, app="bad", runtime=("python", "3.11"), handler="handler:handle",
                     resources={"memory_mb": 32, "timeout_s": 0.5},
                     scaling={"instance_threshold": 1, "queue_size": 1, "queue_timeout_s": 5, "max_quick_start": 0})
        for name in names
    ]  # fmt: skip
    code = {name: {"handler.py": FAILING[name]} for name in names}
    r = await live.http.post(
        "/api/v1/onboard",
        content=package(tmp_path / "bad", "bad", fns, code=code),
        headers=live.token,
    )
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    ("name", "status", "title", "detail"),
    [
        ("raises", 500, "Function raised an exception", "ValueError: reading out of range"),
        ("exits", 502, "Function crashed", "status 3"),
        ("loops", 504, "Function timed out", "0.5"),
        ("hogs", 502, "Function exceeded its memory limit", ""),
    ],
)
async def test_failing_function_is_reported_and_replaced(
    live: Live, tmp_path: Path, name: str, status: int, title: str, detail: str
) -> None:
    await onboard_failing(live, tmp_path)
    for _ in range(2):  # the second call proves the instance was replaced (or survived a raise)
        r = await live.http.post(f"/fn/bad/{name}", content=b"x")
        assert r.status_code == status, r.text
        problem = r.json()
        assert problem["title"] == title and detail in problem["detail"]
        await live.healthy()
    outcomes = live.platform.telemetry.as_json()[f"bad/{name}@1.0.0"]["outcomes"]
    assert sum(outcomes.values()) == 2 and "ok" not in outcomes
    assert live.platform.capacity.memory_reserved_mb <= 32 * 3 + 12 * 4


async def test_burst_above_the_threshold_is_refused_and_counted(live: Live, tmp_path: Path) -> None:
    await onboard_failing(live, tmp_path)
    results = await asyncio.gather(
        *(live.http.post("/fn/bad/slow", content=b"x") for _ in range(6))
    )
    codes = sorted(r.status_code for r in results)
    # threshold 1 and queue 1: two are served, four are told the function is overloaded
    assert codes == [200, 200, 429, 429, 429, 429]
    outcomes = live.platform.telemetry.as_json()["bad/slow@1.0.0"]["outcomes"]
    assert outcomes == {"ok": 2, "overloaded": 4}
    await live.healthy()


async def test_oversized_event_is_refused(live: Live) -> None:
    r = await live.http.post(
        "/fn/healthy/echo", content=b"x" * (live.platform.config.max_event_bytes + 1)
    )
    assert r.status_code == 413 and "over the limit" in r.json()["detail"]
    await live.healthy()


async def test_a_function_moves_to_a_container_by_its_runtime_field(
    live: Live, tmp_path: Path
) -> None:
    """Issue 3: the same function, another virtualisation form, one descriptor field changed."""
    op = {"Authorization": f"Bearer {live.platform.operator_token}"}
    body = {"name": "python-box", "version": "3.11", "backend": "container"}
    assert (await live.http.post("/api/v1/runtimes", json=body, headers=op)).status_code == 201
    fn = function_doc("echo", app="boxed", runtime=("python-box", "3.11"), handler="handler:handle",
                      resources={"memory_mb": 64, "timeout_s": 5})  # fmt: skip
    data = package(
        tmp_path / "boxed", "boxed", [fn], code={"echo": {"handler.py": FAILING["echo"]}}
    )
    assert (
        await live.http.post("/api/v1/onboard", content=data, headers=live.token)
    ).status_code == 201
    r = await live.http.post("/fn/boxed/echo", content=b"in a box")
    assert (r.status_code, r.content) == (200, b"in a box")
    instances = (await live.http.get("/api/v1/instances", headers=live.token)).json()
    assert {i["backend"] for i in instances if i["app"] == "boxed"} == {"container"}
    await live.healthy()
