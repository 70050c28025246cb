from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from nfaas.errors import (
    EventTooLarge,
    FunctionCrashed,
    FunctionOutOfMemory,
    FunctionRaised,
    FunctionTimeout,
    SandboxError,
    SandboxStartError,
)
from nfaas.sandboxes.base import Event, FunctionCode, Limits, SandboxState
from nfaas.sandboxes.process import ProcessBackend, ProcessConfig, ProcessSandbox
from nfaas.sandboxes.registry import backend_class
from tests.requirements import require
from tests.sandboxes.contract import Kit, SandboxContract

FUNCTIONS = Path(__file__).parent / "functions"
CONTRACT_HANDLERS = {
    "echo": "echo:handle",
    "raises": "raises:handle",
    "crashes": "crashes:handle",
    "loops": "loops:handle",
    "hogs_memory": "hogs_memory:handle",
}
SMALL = Limits(memory_mb=32, timeout_s=0.5)


@pytest.fixture(autouse=True)
def _backend_available() -> None:
    require(ProcessBackend.availability(), "the process backend")


def code(handler: str, limits: Limits = SMALL, path: Path = FUNCTIONS, **env: str) -> FunctionCode:
    return FunctionCode("app", handler.partition(":")[0], "1", handler, path, limits, env)


def broken_folder(tmp_path: Path) -> Path:
    """A code folder as the catalog unpacks one: others may read it (the worker's uid)."""
    folder = tmp_path / "code"
    folder.mkdir()
    folder.chmod(0o755)
    (folder / "broken.py").write_text("def handle(event, context)\n    return b''\n")
    (folder / "broken.py").chmod(0o644)
    return folder


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting for its parent counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # gone, or being reaped as we read
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


async def until(condition: Callable[[], bool], within: float = 2.0) -> bool:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


@pytest.fixture
async def backend() -> AsyncIterator[ProcessBackend]:
    async with ProcessBackend() as started:
        yield started


async def loaded(backend: ProcessBackend, function: FunctionCode) -> ProcessSandbox:
    sandbox = backend.create()
    assert isinstance(sandbox, ProcessSandbox)
    await sandbox.prepare()
    await sandbox.load(function)
    return sandbox


class TestProcessContract(SandboxContract):
    @pytest.fixture
    async def kit(self, backend: ProcessBackend, tmp_path: Path) -> Kit:
        def make(behaviour: str) -> FunctionCode:
            if behaviour == "broken":
                return code("broken:handle", path=broken_folder(tmp_path))
            return code(CONTRACT_HANDLERS[behaviour])

        return Kit(backend, make)


def test_registered_as_process() -> None:
    assert backend_class("process") is ProcessBackend


def test_zygote_imports_neither_asyncio_nor_threading() -> None:
    """Every fork copies what the zygote imported: asyncio (+9 MB) and threading's
    at-fork hook would slow each one, and they come in with a single import."""
    check = (
        "import sys, nfaas.sandboxes.zygote; "
        "print(sorted({'asyncio', 'threading', 'nfaas.sandboxes.zygote_client'} & set(sys.modules)))"
    )
    found = subprocess.run(
        [sys.executable, "-B", "-P", "-s", "-c", check], capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "[]"


class TestFailures:
    @pytest.mark.parametrize(
        ("handler", "words"),
        [
            ("crashes:handle", "exited with status 3"),
            ("crashes:abort", "killed by signal 6 (SIGABRT)"),
            ("crashes:exit_via_sys", "exited with status 5"),
        ],
    )
    async def test_crash_says_how_the_worker_ended(
        self, backend: ProcessBackend, handler: str, words: str
    ) -> None:
        async with await loaded(backend, code(handler)) as sandbox:
            with pytest.raises(
                FunctionCrashed, match=words.replace("(", r"\(").replace(")", r"\)")
            ):
                await sandbox.invoke(Event("invoke"))
            assert sandbox.state is SandboxState.FAILED

    async def test_raise_carries_the_function_traceback(self, backend: ProcessBackend) -> None:
        async with await loaded(backend, code("raises:handle")) as sandbox:
            with pytest.raises(FunctionRaised) as info:
                await sandbox.invoke(Event("invoke"))
            assert info.value.exc_type == "ValueError"
            assert info.value.detail == "ValueError: bad reading"
            assert 'raises.py", line 2, in handle' in info.value.traceback
            assert "worker.py" not in info.value.traceback

    async def test_one_allocation_past_the_limit_is_out_of_memory(
        self, backend: ProcessBackend
    ) -> None:
        async with await loaded(backend, code("hogs_memory:at_once")) as sandbox:
            with pytest.raises(FunctionOutOfMemory, match="32 MB"):
                await sandbox.invoke(Event("invoke"))
            assert sandbox.state is SandboxState.FAILED

    async def test_memory_limit_leaves_room_for_the_limit_itself(
        self, backend: ProcessBackend
    ) -> None:
        """A function gets its memory_mb on top of the warm runtime, not less."""
        async with await loaded(
            backend, code("hogs_memory:handle", Limits(memory_mb=400, timeout_s=5))
        ) as sandbox:
            result = await sandbox.invoke(Event("invoke"))
            assert result.body == b"allocated 320 MB"

    async def test_cpu_time_limit_ends_a_spinning_function(self, backend: ProcessBackend) -> None:
        # 0.1 core over a 5 s timeout: a 1 s CPU budget (the least a function gets)
        limits = Limits(memory_mb=32, cpu=0.1, timeout_s=5.0)
        async with await loaded(backend, code("loops:handle", limits)) as sandbox:
            with pytest.raises(FunctionTimeout, match="CPU time") as info:
                await sandbox.invoke(Event("invoke"))
            assert "1 s per invocation" in info.value.detail
            assert "was killed" in info.value.detail
            assert sandbox.state is SandboxState.FAILED

    async def test_timeout_kills_the_worker(self, backend: ProcessBackend) -> None:
        async with await loaded(backend, code("loops:handle")) as sandbox:
            pid = sandbox.pid
            assert pid is not None
            with pytest.raises(FunctionTimeout):
                await sandbox.invoke(Event("invoke"))
            assert await until(lambda: not alive(pid))

    async def test_worker_killed_while_idle_fails_its_sandbox(
        self, backend: ProcessBackend
    ) -> None:
        async with await loaded(backend, code("echo:handle")) as sandbox:
            assert sandbox.pid is not None
            os.kill(sandbox.pid, signal.SIGKILL)
            assert await until(lambda: sandbox.state is SandboxState.FAILED)
            assert not sandbox.usable
            with pytest.raises(FunctionCrashed, match="signal 9"):
                await sandbox.invoke(Event("invoke"))

    async def test_cancelled_invocation_still_meets_its_deadline(
        self, backend: ProcessBackend
    ) -> None:
        async with await loaded(backend, code("loops:handle")) as sandbox:
            task = asyncio.create_task(sandbox.invoke(Event("invoke")))
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert sandbox.usable
            assert await until(lambda: sandbox.state is SandboxState.FAILED)

    async def test_cancelled_invocation_frees_its_slot_when_answered(
        self, backend: ProcessBackend
    ) -> None:
        async with await loaded(backend, code("sleeps:handle", Limits(timeout_s=5))) as sandbox:
            task = asyncio.create_task(sandbox.invoke(Event("invoke", b"0.2")))
            await asyncio.sleep(0.05)
            task.cancel()
            result = await sandbox.invoke(Event("invoke", b"0"))
            assert result.body == b"slept"
            assert sandbox.usable


class TestLoad:
    @pytest.mark.parametrize(
        ("handler", "words"),
        [
            ("import_fails:handle", "ModuleNotFoundError: No module named"),
            ("echo:missing", "AttributeError"),
            ("echo", "must be 'module:function'"),
            ("json:dumps", "the runtime's own"),
        ],
    )
    async def test_load_error_names_the_cause(
        self, backend: ProcessBackend, handler: str, words: str
    ) -> None:
        sandbox = backend.create()
        await sandbox.prepare()
        with pytest.raises(SandboxStartError, match=words):
            await sandbox.load(code(handler))
        assert sandbox.state is SandboxState.FAILED
        await sandbox.aclose()

    async def test_syntax_error_says_where(self, backend: ProcessBackend, tmp_path: Path) -> None:
        sandbox = backend.create()
        await sandbox.prepare()
        with pytest.raises(SandboxStartError, match="SyntaxError") as info:
            await sandbox.load(code("broken:handle", path=broken_folder(tmp_path)))
        assert "broken.py" in info.value.extra["traceback"]
        await sandbox.aclose()

    async def test_spares_off_still_prepares(self) -> None:
        async with ProcessBackend(ProcessConfig(spares=0)) as backend:
            async with await loaded(backend, code("echo:handle")) as sandbox:
                assert (await sandbox.invoke(Event("invoke", b"x"))).body == b"x"


class TestFunctionView:
    async def test_environment_is_the_functions_own(
        self, backend: ProcessBackend, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("NFAAS_PLATFORM_SECRET", "never in a function")
        async with ProcessBackend() as fresh:  # started after the platform's env changed
            first = await loaded(fresh, code("environment:handle", GREETING="hello"))
            second = await loaded(fresh, code("environment:handle"))
            async with first, second:
                env1 = orjson.loads((await first.invoke(Event("invoke"))).body)
                env2 = orjson.loads((await second.invoke(Event("invoke"))).body)
        assert env1["GREETING"] == "hello"
        assert env1["SET_AT_IMPORT"] == "by this function"
        assert "PATH" in env1
        assert "GREETING" not in env2
        assert "NFAAS_PLATFORM_SECRET" not in env1 | env2

    async def test_module_state_lives_as_long_as_the_sandbox(self, backend: ProcessBackend) -> None:
        async with await loaded(backend, code("counter:handle")) as sandbox:
            answers = [orjson.loads((await sandbox.invoke(Event("invoke"))).body) for _ in range(3)]
        assert [a["count"] for a in answers] == [1, 2, 3]
        assert len({a["pid"] for a in answers}) == 1
        async with await loaded(backend, code("counter:handle")) as other:
            assert orjson.loads((await other.invoke(Event("invoke"))).body)["count"] == 1

    @pytest.mark.parametrize(
        ("kind", "body", "content_type"),
        [
            ("bytes", b"\x00\x01", "application/octet-stream"),
            ("bytearray", b"ab", "application/octet-stream"),
            ("str", "h\u00e9llo".encode(), "text/plain; charset=utf-8"),
            ("none", b"", "application/octet-stream"),
            ("dict", b'{"a":[1,2.5,null,true]}', "application/json"),
            ("list", b'[1,"two"]', "application/json"),
            ("int", b"42", "application/json"),
        ],
    )
    async def test_return_value_mapping(
        self, backend: ProcessBackend, kind: str, body: bytes, content_type: str
    ) -> None:
        async with await loaded(backend, code("returns:handle")) as sandbox:
            result = await sandbox.invoke(Event("invoke", kind.encode()))
        assert (result.body, result.content_type) == (body, content_type)

    async def test_unserialisable_return_is_a_clear_raise(self, backend: ProcessBackend) -> None:
        async with await loaded(backend, code("returns:handle")) as sandbox:
            with pytest.raises(FunctionRaised, match="not bytes, str, None or JSON-serialisable"):
                await sandbox.invoke(Event("invoke", b"object"))
            assert sandbox.usable

    async def test_event_and_context(self, backend: ProcessBackend) -> None:
        limits = Limits(memory_mb=32, timeout_s=2.0)
        async with await loaded(backend, code("returns:context_of", limits)) as sandbox:
            result = await sandbox.invoke(Event("http", b'{"n": 1}', {"method": "GET"}))
            seen: dict[str, Any] = orjson.loads(result.body)
        assert seen["app"] == "app"
        assert seen["function"] == "returns"
        assert seen["version"] == "1"
        assert seen["instance_id"] == sandbox.instance_id
        assert 0 < seen["remaining"] <= 2.0
        assert seen["trigger"] == "http"
        assert seen["meta"] == {"method": "GET"}
        assert seen["json"] == {"n": 1}

    async def test_log_and_print_go_to_the_platform_stderr(
        self, capfd: pytest.CaptureFixture[str]
    ) -> None:
        async with ProcessBackend() as backend:  # started here, so its stderr is captured
            async with await loaded(backend, code("logs:handle")) as sandbox:
                assert (await sandbox.invoke(Event("invoke"))).body == b"logged"
                tag = f"[app/logs@1 {sandbox.instance_id}]"
        out, err = capfd.readouterr()
        assert f"{tag} hello from the function" in err
        assert "printed by the function" in err
        assert "printed by the function" not in out

    @pytest.mark.skipif(os.geteuid() != 0, reason="namespaces are made only as root")
    async def test_worker_has_its_own_uts_namespace(self, backend: ProcessBackend) -> None:
        async with await loaded(backend, code("environment:hostname")) as sandbox:
            assert sandbox.namespaces == ["ipc", "uts"]
            assert (await sandbox.invoke(Event("invoke"))).body == b"nfaas"
            assert sandbox.pid is not None
            ours, theirs = (os.readlink(f"/proc/{p}/ns/uts") for p in (os.getpid(), sandbox.pid))
            assert ours != theirs

    async def test_worker_holds_no_fd_but_its_socket_and_code(
        self, backend: ProcessBackend
    ) -> None:
        async with await loaded(backend, code("echo:handle")) as sandbox:
            fds = {
                int(fd): os.readlink(f"/proc/{sandbox.pid}/fd/{fd}")
                for fd in os.listdir(f"/proc/{sandbox.pid}/fd")
            }
        extra = sorted(target for fd, target in fds.items() if fd > 2)
        assert len(extra) == 2
        assert extra[0] == str(FUNCTIONS)  # the code folder, sent with the load frame
        assert extra[1].startswith("socket:")


class TestFrames:
    @pytest.fixture
    async def small_frames(self) -> AsyncIterator[ProcessBackend]:
        async with ProcessBackend(ProcessConfig(max_frame=64 * 1024)) as started:
            yield started

    async def test_oversized_event_is_refused(self, small_frames: ProcessBackend) -> None:
        async with await loaded(small_frames, code("echo:handle")) as sandbox:
            with pytest.raises(EventTooLarge):
                await sandbox.invoke(Event("invoke", b"x" * 100_000))
            assert (await sandbox.invoke(Event("invoke", b"fits"))).body == b"fits"

    async def test_oversized_result_is_reported(self, small_frames: ProcessBackend) -> None:
        async with await loaded(small_frames, code("returns:big")) as sandbox:
            with pytest.raises(FunctionRaised) as info:
                await sandbox.invoke(Event("invoke", b"100000"))
            assert info.value.exc_type == "ResultTooLarge"
            assert (await sandbox.invoke(Event("invoke", b"10"))).body == b"x" * 10


class TestConcurrency:
    async def test_concurrency_above_one_runs_invocations_in_parallel(
        self, backend: ProcessBackend
    ) -> None:
        limits = Limits(memory_mb=64, timeout_s=5, concurrency=2)
        async with await loaded(backend, code("sleeps:handle", limits)) as sandbox:
            started = time.monotonic()
            results = await asyncio.gather(
                *(sandbox.invoke(Event("invoke", b"0.3")) for _ in range(2))
            )
            elapsed = time.monotonic() - started
        assert [r.body for r in results] == [b"slept", b"slept"]
        assert elapsed < 0.55

    async def test_threaded_worker_reports_out_of_memory(self, backend: ProcessBackend) -> None:
        limits = Limits(memory_mb=32, timeout_s=5, concurrency=2)
        async with await loaded(backend, code("hogs_memory:handle", limits)) as sandbox:
            with pytest.raises(FunctionOutOfMemory):
                await sandbox.invoke(Event("invoke"))


class TestLifetime:
    async def test_killed_zygote_is_replaced_and_sandboxes_live_on(
        self, backend: ProcessBackend, caplog: pytest.LogCaptureFixture
    ) -> None:
        survivor = await loaded(backend, code("echo:handle"))
        old = backend.zygote_pid
        assert old is not None
        os.kill(old, signal.SIGKILL)
        assert await until(lambda: not alive(old))
        with caplog.at_level(logging.WARNING, logger="nfaas.sandboxes.process"):
            async with await loaded(backend, code("echo:handle")) as fresh:
                assert (await fresh.invoke(Event("invoke", b"new"))).body == b"new"
        assert backend.zygote_pid not in (None, old)
        assert "starting a new one" in caplog.text
        async with survivor:
            assert (await survivor.invoke(Event("invoke", b"old"))).body == b"old"

    async def test_backend_aclose_leaves_no_process(self) -> None:
        backend = ProcessBackend()
        await backend.start()
        prepared = backend.create()
        assert isinstance(prepared, ProcessSandbox)
        await prepared.prepare()
        running = await loaded(backend, code("sleeps:handle", Limits(timeout_s=30)))
        hung = asyncio.create_task(running.invoke(Event("invoke", b"20")))
        await asyncio.sleep(0.05)
        pids = [backend.zygote_pid, prepared.pid, running.pid]
        assert all(pid is not None and alive(pid) for pid in pids)
        await backend.aclose()
        await backend.aclose()
        with pytest.raises(SandboxError, match="closed"):
            await hung
        assert await until(lambda: not any(alive(pid) for pid in pids if pid is not None))

    async def test_workers_end_when_the_platform_dies(self, tmp_path: Path) -> None:
        """A platform killed outright leaves neither zygote nor workers, even busy ones,
        nor their scratch folders."""
        script = textwrap.dedent(
            f"""
            import asyncio, os, signal
            from pathlib import Path
            from nfaas.sandboxes.base import Event, FunctionCode, Limits
            from nfaas.sandboxes.process import ProcessBackend

            async def main():
                backend = ProcessBackend()
                await backend.start()
                code = FunctionCode("app", "s", "1", "sleeps:handle", Path({str(FUNCTIONS)!r}),
                                    Limits(timeout_s=60))
                sandbox = backend.create()
                await sandbox.prepare()
                await sandbox.load(code)
                asyncio.create_task(sandbox.invoke(Event("invoke", b"60")))
                await asyncio.sleep(0.1)
                print(backend.zygote_pid, sandbox.pid, sandbox.scratch.parent, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)

            asyncio.run(main())
            """
        )
        platform = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await asyncio.wait_for(platform.communicate(), 30)
        assert platform.returncode == -signal.SIGKILL, err.decode()
        *numbers, scratch = out.decode().split()
        pids = [int(pid) for pid in numbers]
        assert len(pids) == 2
        assert await until(lambda: not any(alive(pid) for pid in pids), within=3.0)
        assert await until(lambda: not Path(scratch).exists())
