from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from nfaas.errors import (
    BackendUnavailable,
    FunctionCrashed,
    FunctionOutOfMemory,
    FunctionTimeout,
    SandboxStartError,
)
from nfaas.sandboxes.base import Event, FunctionCode, Limits, SandboxState
from nfaas.sandboxes.container import ContainerBackend, ContainerConfig, ContainerSandbox
from nfaas.sandboxes.registry import backend_class
from tests.requirements import require
from tests.sandboxes.contract import Kit, SandboxContract
from tests.sandboxes.test_process import until

FUNCTIONS = Path(__file__).parent / "functions"
CONTRACT_HANDLERS = {
    "echo": "echo:handle",
    "raises": "raises:handle",
    "crashes": "crashes:handle",
    "loops": "loops:handle",
    "hogs_memory": "hogs_memory:handle",
}
SMALL = Limits(memory_mb=32, timeout_s=0.5)
PROBE = """\
import os, socket

def handle(event, context):
    with open("/proc/net/dev") as devices:
        interfaces = [line.split(":")[0].strip() for line in devices.readlines()[2:]]
    return {"pid": os.getpid(), "uid": os.getuid(), "interfaces": interfaces,
            "hostname": socket.gethostname(), "root_writable": os.access("/", os.W_OK)}


def write_tmp(event, context):
    with open("/tmp/" + event.text(), "wb") as out:
        out.write(b"x" * 1024)
    return os.listdir("/tmp")
"""


@pytest.fixture(autouse=True)
def _backend_available() -> None:
    require(ContainerBackend.availability(), "the container backend")


def code(handler: str, limits: Limits = SMALL, path: Path = FUNCTIONS) -> FunctionCode:
    return FunctionCode("app", handler.partition(":")[0], "1", handler, path, limits)


def folder_with(tmp_path: Path, name: str, source: str) -> Path:
    folder = tmp_path / "code"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(source)
    return folder


def runc_list() -> str:
    return subprocess.run(["runc", "list", "-q"], capture_output=True, text=True).stdout


def runc_status(container_id: str) -> str:
    state = subprocess.run(["runc", "state", container_id], capture_output=True, text=True)
    return str(orjson.loads(state.stdout)["status"]) if state.returncode == 0 else "gone"


@pytest.fixture
async def backend() -> AsyncIterator[ContainerBackend]:
    async with ContainerBackend() as started:
        yield started


async def loaded(backend: ContainerBackend, function: FunctionCode) -> ContainerSandbox:
    sandbox = backend.create()
    assert isinstance(sandbox, ContainerSandbox)
    await sandbox.prepare()
    await sandbox.load(function)
    return sandbox


class TestContainerContract(SandboxContract):
    @pytest.fixture
    async def kit(self, backend: ContainerBackend, tmp_path: Path) -> Kit:
        def make(behaviour: str) -> FunctionCode:
            if behaviour == "broken":
                broken = "def handle(event, context)\n    return b''\n"
                return code("broken:handle", path=folder_with(tmp_path, "broken.py", broken))
            return code(CONTRACT_HANDLERS[behaviour])

        return Kit(backend, make)


def test_registered_as_container() -> None:
    assert backend_class("container") is ContainerBackend


class TestIsolation:
    async def test_own_pid_namespace_no_network_no_root(
        self, backend: ContainerBackend, tmp_path: Path
    ) -> None:
        probe = code("probe:handle", path=folder_with(tmp_path, "probe.py", PROBE))
        async with await loaded(backend, probe) as sandbox:
            seen = orjson.loads((await sandbox.invoke(Event("invoke"))).body)
            assert sandbox.namespaces == ["pid", "mnt", "net", "ipc", "uts"]
        assert seen["pid"] < 16  # PID 1 is the container's init; runc's threads took a few
        assert seen["interfaces"] == ["lo"]
        assert seen["uid"] == backend.config.uid != 0
        assert seen["hostname"] == "nfaas"
        assert seen["root_writable"] is False

    async def test_tmp_is_private_and_writable(
        self, backend: ContainerBackend, tmp_path: Path
    ) -> None:
        probe = code("probe:write_tmp", path=folder_with(tmp_path, "probe.py", PROBE))
        # (The platform's runtime may itself live under /tmp, so /tmp may hold its mount points.)
        async with await loaded(backend, probe) as sandbox:
            assert "first" in orjson.loads((await sandbox.invoke(Event("invoke", b"first"))).body)
        async with await loaded(backend, probe) as other:
            seen = orjson.loads((await other.invoke(Event("invoke", b"second"))).body)
            assert "second" in seen and "first" not in seen

    async def test_crash_says_how_the_worker_ended(self, backend: ContainerBackend) -> None:
        async with await loaded(backend, code("crashes:abort")) as sandbox:
            with pytest.raises(FunctionCrashed, match=r"signal 6 \(SIGABRT\)"):
                await sandbox.invoke(Event("invoke"))


class TestLimits:
    async def test_memory_hog_is_oom_killed_by_the_cgroup(self, backend: ContainerBackend) -> None:
        async with await loaded(backend, code("hogs_memory:handle")) as sandbox:
            assert sandbox.container is not None and sandbox.container.cgroup is not None
            with pytest.raises(FunctionOutOfMemory, match="cgroup OOM killer"):
                await sandbox.invoke(Event("invoke"))
            assert sandbox.container.cgroup.oom_kills() >= 1
            assert sandbox.state is SandboxState.FAILED

    async def test_limits_are_written_to_the_cgroup(self, backend: ContainerBackend) -> None:
        limits = Limits(memory_mb=48, cpu=0.25, timeout_s=1)
        async with await loaded(backend, code("echo:handle", limits)) as sandbox:
            assert sandbox.container is not None and sandbox.container.cgroup is not None
            cgroup = sandbox.container.cgroup
            assert int((cgroup.memory / "memory.limit_in_bytes").read_text()) == 48 << 20
            assert int((cgroup.cpu / "cpu.cfs_quota_us").read_text()) == 25_000
            stats = await sandbox.stats()
            assert 0 < stats.rss_bytes <= 48 << 20

    async def test_timeout_kills_the_container(self, backend: ContainerBackend) -> None:
        async with await loaded(backend, code("loops:handle")) as sandbox:
            assert sandbox.container is not None
            container_id = sandbox.container.container_id
            with pytest.raises(FunctionTimeout):
                await sandbox.invoke(Event("invoke"))
            assert await until(lambda: runc_status(container_id) == "stopped")


class TestBadInput:
    async def test_missing_code_folder_fails_load(
        self, backend: ContainerBackend, tmp_path: Path
    ) -> None:
        sandbox = backend.create()
        await sandbox.prepare()
        with pytest.raises(SandboxStartError, match="container"):
            await sandbox.load(code("echo:handle", path=tmp_path / "missing"))
        assert sandbox.state is SandboxState.FAILED
        await sandbox.aclose()


class TestLifetime:
    async def test_aclose_leaves_no_container_cgroup_or_bundle(self) -> None:
        backend = ContainerBackend()
        await backend.start()
        prepared = backend.create()
        await prepared.prepare()
        running = await loaded(backend, code("sleeps:handle", Limits(timeout_s=30)))
        hung = asyncio.create_task(running.invoke(Event("invoke", b"20")))
        await asyncio.sleep(0.05)
        containers = [s.container for s in (prepared, running) if isinstance(s, ContainerSandbox)]
        assert all(c is not None for c in containers)
        ids = {c.container_id for c in containers if c is not None}
        cgroups = [c.cgroup for c in containers if c is not None and c.cgroup is not None]
        bundles = [c.bundle for c in containers if c is not None]
        assert ids <= set(runc_list().split())
        await prepared.aclose()
        await prepared.aclose()
        await backend.aclose()
        await backend.aclose()
        with pytest.raises(Exception, match="closed"):
            await hung
        assert not ids & set(runc_list().split())
        assert not any(cgroup.exists() for cgroup in cgroups)
        assert not list(Path("/sys/fs/cgroup").glob(f"*/{backend.cgroup_parent.lstrip('/')}"))
        assert not any(bundle.exists() for bundle in bundles)

    async def test_containers_of_a_dead_platform_stop_and_are_swept(self) -> None:
        """A platform killed outright: its containers' workers end with it, and the next
        backend to start deletes them (runc state and cgroups)."""
        script = textwrap.dedent(
            """
            import asyncio, os, signal
            from nfaas.sandboxes.container import ContainerBackend

            async def main():
                backend = ContainerBackend()
                await backend.start()
                sandbox = backend.create()
                await sandbox.prepare()
                print(sandbox.container.container_id, backend._work, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)

            asyncio.run(main())
            """
        )
        platform = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await asyncio.wait_for(platform.communicate(), 30)
        container_id, work = out.decode().split()
        assert container_id, err.decode()
        assert await until(lambda: runc_status(container_id) == "stopped", within=5.0)
        async with ContainerBackend():
            assert runc_status(container_id) == "gone"
            assert not list(Path("/sys/fs/cgroup").glob(f"*/*/{container_id}"))
            assert not Path(work).exists()


class TestAvailability:
    def test_missing_runc_names_the_package(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PATH", "/nonexistent")
        usable, why = ContainerBackend.availability()
        assert not usable
        assert "Debian package 'runc'" in why

    async def test_missing_interpreter_is_backend_unavailable(self) -> None:
        backend = ContainerBackend(ContainerConfig(python="/nonexistent/bin/python3"))
        with pytest.raises(BackendUnavailable, match="interpreter"):
            await backend.start()

    async def test_worker_that_never_gets_ready_fails_prepare(self) -> None:
        async with ContainerBackend(ContainerConfig(pool_memory_mb=4)) as backend:
            sandbox = backend.create()
            assert isinstance(sandbox, ContainerSandbox)
            with pytest.raises(SandboxStartError):
                await sandbox.prepare()
            assert sandbox.state is SandboxState.FAILED
            assert sandbox.container is not None
            container_id = sandbox.container.container_id
            await sandbox.aclose()
        assert container_id not in runc_list().split()

    async def test_start_without_runc_is_backend_unavailable(self) -> None:
        backend = ContainerBackend(ContainerConfig(runc="/nonexistent/runc"))
        with pytest.raises(BackendUnavailable, match="apt-get install runc"):
            await backend.start()
        await backend.aclose()
