from __future__ import annotations

import asyncio
import gc
import logging
import shutil
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from nfaas.errors import (
    EventTooLarge,
    FunctionCrashed,
    FunctionRaised,
    FunctionTimeout,
    SandboxError,
    SandboxStartError,
)
from nfaas.sandboxes.base import Event, FunctionCode, Limits, SandboxState, WasiGrant
from nfaas.sandboxes.registry import backend_class
from nfaas.sandboxes.wasm import WasmBackend, WasmSandbox
from nfaas.sandboxes.wasm_abi import (
    GuestExports,
    decode_return,
    encode_return,
    inspect_module,
    may_run_unmetered,
    read_module_source,
)
from nfaas.sandboxes.wasm_inline import INLINE_FUEL, INLINE_MEMORY_MB
from tests.sandboxes.contract import Kit, SandboxContract

MODULES = Path(__file__).parent / "wasm"
REPO = Path(__file__).parents[2]
CLASSIFY = REPO / "examples/iot-telemetry/Files/classify/classify.wat"
WASM_C = REPO / "examples/wasm-c"

# Small limits keep every failure quick: 2 MB of memory, 0.3 s per call. Without fuel,
# a function keeps its own thread; with a small budget it runs on the event loop.
LIMITS = Limits(memory_mb=2, timeout_s=0.3)
INLINE_LIMITS = replace(LIMITS, fuel=10_000)
BOTH_PATHS = pytest.mark.parametrize("limits", [LIMITS, INLINE_LIMITS], ids=["threaded", "inline"])


def module_code(
    behaviour: str,
    *,
    handler: str = "handle",
    limits: Limits = LIMITS,
    path: Path | None = None,
    **kwargs: object,
) -> FunctionCode:
    return FunctionCode(
        "app",
        behaviour.replace("_", "-"),
        "1",
        handler,
        path or MODULES / f"{behaviour}.wat",
        limits,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
async def backend() -> AsyncIterator[WasmBackend]:
    async with WasmBackend() as started:
        yield started


async def loaded(backend: WasmBackend, code: FunctionCode) -> WasmSandbox:
    sandbox = backend.create()
    assert isinstance(sandbox, WasmSandbox)
    await sandbox.prepare()
    await sandbox.load(code)
    return sandbox


async def call(backend: WasmBackend, code: FunctionCode, body: bytes = b"x") -> bytes:
    async with await loaded(backend, code) as sandbox:
        return (await sandbox.invoke(Event("invoke", body))).body


class TestWasmContractThreaded(SandboxContract):
    @pytest.fixture
    async def kit(self, backend: WasmBackend) -> Kit:
        return Kit(backend, module_code)

    async def test_runs_on_its_own_thread(self, kit: Kit) -> None:
        async with await self._loaded(kit, "echo") as sandbox:
            assert isinstance(sandbox, WasmSandbox) and not sandbox.runs_inline


class TestWasmContractInline(SandboxContract):
    @pytest.fixture
    async def kit(self, backend: WasmBackend) -> Kit:
        return Kit(backend, lambda behaviour: module_code(behaviour, limits=INLINE_LIMITS))

    async def test_runs_on_the_event_loop(self, kit: Kit) -> None:
        async with await self._loaded(kit, "echo") as sandbox:
            assert isinstance(sandbox, WasmSandbox) and sandbox.runs_inline


#: a module whose handler fills its memory with one instruction, for one unit of fuel
FILLS_MEMORY = """(module
  (memory (export "memory") 1)
  (func (export "nfaas_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "handle") (param $ptr i32) (param $len i32) (result i64)
    (memory.fill (i32.const 2048) (i32.const 0) (i32.const 1024))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
            (i64.extend_i32_u (local.get $len)))))
"""


class TestInlinePolicy:
    @pytest.mark.parametrize(
        ("behaviour", "limits", "inline"),
        [
            ("echo", INLINE_LIMITS, True),
            ("echo", replace(LIMITS, fuel=INLINE_FUEL), True),
            ("echo", LIMITS, False),  # no fuel: only the deadline bounds a call
            ("echo", replace(LIMITS, fuel=INLINE_FUEL + 1), False),
            ("echo", replace(INLINE_LIMITS, memory_mb=INLINE_MEMORY_MB + 1), False),
            ("logs", INLINE_LIMITS, False),  # a host call runs outside fuel
        ],
    )
    async def test_only_small_bounded_functions_run_inline(
        self, backend: WasmBackend, behaviour: str, limits: Limits, inline: bool
    ) -> None:
        async with await loaded(backend, module_code(behaviour, limits=limits)) as sandbox:
            assert sandbox.runs_inline is inline
            assert (await sandbox.invoke(Event("invoke", b"either way"))).body == b"either way"

    async def test_wasi_keeps_its_thread(self, backend: WasmBackend) -> None:
        code = module_code("wasi_stdout", limits=INLINE_LIMITS, wasi=WasiGrant())
        async with await loaded(backend, code) as sandbox:
            assert not sandbox.runs_inline
            assert (await sandbox.invoke(Event("invoke", b"x"))).body == b"written"

    async def test_unmetered_instruction_keeps_its_thread(
        self, backend: WasmBackend, tmp_path: Path
    ) -> None:
        (tmp_path / "fills.wat").write_text(FILLS_MEMORY)
        code = module_code("fills", path=tmp_path / "fills.wat", limits=INLINE_LIMITS)
        async with await loaded(backend, code) as sandbox:
            assert not sandbox.runs_inline
            assert (await sandbox.invoke(Event("invoke", b"filled"))).body == b"filled"

    async def test_precompiled_module_needs_its_source_to_run_inline(self, tmp_path: Path) -> None:
        async with WasmBackend() as first:
            artefact = await first.compile(module_code("echo"), tmp_path)
        # Only the source the artefact was made from tells what the artefact's code does.
        sources = [
            (MODULES / "echo.wat", True),
            (tmp_path / "gone.wat", False),
            (MODULES / "crashes.wat", False),
        ]
        for source, inline in sources:
            async with WasmBackend() as backend:  # nothing cached: the artefact is read
                code = module_code(
                    "echo", path=source, limits=INLINE_LIMITS, compiled_path=artefact
                )
                async with await loaded(backend, code) as sandbox:
                    assert sandbox.runs_inline is inline

    async def test_inline_can_be_turned_off(self) -> None:
        async with WasmBackend(inline_fuel=0) as backend:
            async with await loaded(backend, module_code("echo", limits=INLINE_LIMITS)) as sandbox:
                assert not sandbox.runs_inline

    async def test_epoch_deadline_ends_an_inline_call(self) -> None:
        # A budget far past the default, allowed inline: only the deadline can end the loop,
        # so the epoch must tick while the event loop's thread runs the guest.
        async with WasmBackend(inline_fuel=1 << 62) as backend:
            code = module_code("loops", limits=Limits(memory_mb=2, timeout_s=0.05, fuel=1 << 62))
            async with await loaded(backend, code) as sandbox:
                assert sandbox.runs_inline
                with pytest.raises(FunctionTimeout, match=r"exceeded 0\.05 s"):
                    await sandbox.invoke(Event("invoke", b"x"))
                assert (await sandbox.stats()).cpu_seconds > 0.02

    @pytest.mark.parametrize(
        ("wat", "unmetered"),
        [
            (CLASSIFY.read_text(), False),
            (FILLS_MEMORY, True),
            (FILLS_MEMORY.replace("memory.fill", "memory.copy"), True),
            # 124 is encoded as 0xFC 0x00: the prefix byte, but no unmetered instruction
            (
                FILLS_MEMORY.replace(
                    "(memory.fill (i32.const 2048) (i32.const 0) (i32.const 1024))",
                    "(drop (i32.const 124))",
                ),
                False,
            ),
        ],
    )
    def test_unmetered_instructions_are_found(self, wat: str, unmetered: bool) -> None:
        import wasmtime

        assert may_run_unmetered(bytes(wasmtime.wat2wasm(wat))) is unmetered

    def test_fuel_bound_is_unknown_without_the_bytes(self) -> None:
        import wasmtime

        wasm = read_module_source(MODULES / "echo.wat", "echo")
        module = wasmtime.Module(wasmtime.Engine(), wasm)
        assert inspect_module(module, "echo", wasm).fuel_bounded
        assert not inspect_module(module, "echo").fuel_bounded


class TestAbi:
    @pytest.mark.parametrize(("ptr", "length"), [(0, 0), (1024, 5), (0x7FFF_FFFF, 0xFFFF_FFFF)])
    @pytest.mark.parametrize("error", [False, True])
    def test_round_trip(self, ptr: int, length: int, error: bool) -> None:
        value = encode_return(ptr, length, error=error)
        assert -(1 << 63) <= value < (1 << 63)
        assert (value < 0) is error
        decoded = decode_return(value)
        assert (decoded.is_error, decoded.ptr, decoded.length) == (error, ptr, length)

    def test_export_call_matches_wasmtime_call(self) -> None:
        import wasmtime

        store = wasmtime.Store()
        module = wasmtime.Module(store.engine, (MODULES / "echo.wat").read_text())
        instance = wasmtime.Linker(store.engine).instantiate(store, module)
        exports = GuestExports.bind(instance, store, "handle")
        # the typed path is what makes small invocations cheap; a wasmtime-py upgrade may lose it
        assert exports.handler.fast and exports.alloc.fast
        handle = instance.exports(store)["handle"]
        assert isinstance(handle, wasmtime.Func)
        for ptr, length in [(0, 0), (4096, 5), (0x7FFF_FFFF, 3)]:
            assert exports.handler(ptr, length) == handle(store, ptr, length)
        assert exports.alloc(10) == 4096

    def test_memory_copies_stay_inside_linear_memory(self) -> None:
        import wasmtime

        store = wasmtime.Store()
        module = wasmtime.Module(store.engine, (MODULES / "echo.wat").read_text())
        instance = wasmtime.Linker(store.engine).instantiate(store, module)
        exports = GuestExports.bind(instance, store, "handle")
        assert exports.size == 1 << 16
        exports.write(exports.size - 3, b"end")
        assert exports.read(exports.size - 3, 3) == b"end"
        # raw copies past the end would touch the platform's own memory
        with pytest.raises(IndexError):
            exports.write(exports.size - 2, b"end")
        with pytest.raises(IndexError):
            exports.read(exports.size, 1)
        assert exports.memory.grow(store, 1) == 1
        assert exports.refresh() == 2 << 16
        exports.write((1 << 16) + 5, b"grown")
        assert exports.read((1 << 16) + 5, 5) == b"grown"


def test_registry_names_the_backend() -> None:
    assert backend_class("wasm") is WasmBackend
    available, why = WasmBackend.availability()
    assert available and "wasmtime" in why


class TestLoading:
    async def test_precompiled_module_loads_without_its_source(
        self, backend: WasmBackend, tmp_path: Path
    ) -> None:
        artefact = await backend.compile(module_code("echo"), tmp_path / "compiled")
        assert artefact is not None and artefact.suffix == ".cwasm" and artefact.is_file()
        code = module_code("echo", path=tmp_path / "gone.wat", compiled_path=artefact)
        assert await call(backend, code, b"precompiled") == b"precompiled"

    async def test_artefact_is_deserialized_by_a_fresh_backend(self, tmp_path: Path) -> None:
        async with WasmBackend() as first:
            artefact = await first.compile(module_code("echo"), tmp_path)
        async with WasmBackend() as second:
            code = module_code("echo", path=tmp_path / "gone.wat", compiled_path=artefact)
            assert await call(second, code, b"again") == b"again"
            assert len(second.modules) == 1

    async def test_stale_artefact_falls_back_to_the_source(
        self, backend: WasmBackend, tmp_path: Path
    ) -> None:
        stale = tmp_path / "stale.cwasm"
        stale.write_bytes(b"not a compiled module")
        assert await call(backend, module_code("echo", compiled_path=stale), b"hi") == b"hi"

    async def test_binary_modules_load_too(self, backend: WasmBackend, tmp_path: Path) -> None:
        import wasmtime

        binary = tmp_path / "echo.wasm"
        binary.write_bytes(wasmtime.wat2wasm((MODULES / "echo.wat").read_text()))
        assert await call(backend, module_code("echo", path=binary), b"bin") == b"bin"

    async def test_sandboxes_share_one_compiled_module(self, backend: WasmBackend) -> None:
        for body in (b"one", b"two"):
            assert await call(backend, module_code("echo"), body) == body
        assert len(backend.modules) == 1

    @pytest.mark.parametrize(
        ("behaviour", "words"),
        [
            (
                "broken",
                ["app/broken@1", "broken.wat is not valid WAT: expected `(` at line 6, column 3"],
            ),
            ("missing_export", ["no function export 'handle'", "(i32, i32) -> i64"]),
            ("foreign_import", ["env.sensor_read"]),
            ("big_memory", ["cannot instantiate"]),
        ],
    )
    async def test_refusals_say_why(
        self, backend: WasmBackend, tmp_path: Path, behaviour: str, words: list[str]
    ) -> None:
        code = module_code(behaviour)
        sandbox = backend.create()
        await sandbox.prepare()
        with pytest.raises(SandboxStartError) as info:
            await sandbox.load(code)
        assert sandbox.state is SandboxState.FAILED
        await sandbox.aclose()
        for word in words:
            assert word in info.value.detail
        if behaviour != "big_memory":  # only instantiation knows the memory limit
            with pytest.raises(SandboxStartError):
                await backend.compile(code, tmp_path)
            assert not list(tmp_path.iterdir())

    async def test_missing_module_is_a_start_error(
        self, backend: WasmBackend, tmp_path: Path
    ) -> None:
        with pytest.raises(SandboxStartError, match="cannot read the module at"):
            await call(backend, module_code("echo", path=tmp_path / "absent.wat"))

    async def test_invoke_after_close_is_refused(self, backend: WasmBackend) -> None:
        sandbox = await loaded(backend, module_code("echo"))
        await sandbox.aclose()
        with pytest.raises(SandboxError):
            await sandbox.invoke(Event("invoke", b"x"))


class TestFailures:
    @BOTH_PATHS
    async def test_error_result_carries_the_message(
        self, backend: WasmBackend, limits: Limits
    ) -> None:
        async with await loaded(backend, module_code("raises", limits=limits)) as sandbox:
            for _ in range(2):
                with pytest.raises(FunctionRaised, match=r"^bad reading: sensor offline$"):
                    await sandbox.invoke(Event("invoke", b"x"))

    @BOTH_PATHS
    async def test_trap_message_names_the_trap(self, backend: WasmBackend, limits: Limits) -> None:
        with pytest.raises(FunctionCrashed, match="unreachable") as info:
            await call(backend, module_code("crashes", limits=limits))
        assert "boom" in info.value.detail
        assert info.value.extra["trap"] == "unreachable"

    @BOTH_PATHS
    async def test_result_outside_memory_is_a_crash(
        self, backend: WasmBackend, limits: Limits
    ) -> None:
        async with await loaded(backend, module_code("bad_result", limits=limits)) as sandbox:
            with pytest.raises(FunctionCrashed, match="outside linear memory"):
                await sandbox.invoke(Event("invoke", b"x"))
            assert sandbox.state is SandboxState.FAILED
            assert (await sandbox.stats()).rss_bytes == 0

    @BOTH_PATHS
    async def test_event_larger_than_memory_is_refused_untouched(
        self, backend: WasmBackend, limits: Limits
    ) -> None:
        async with await loaded(backend, module_code("echo", limits=limits)) as sandbox:
            with pytest.raises(EventTooLarge, match="2 MB"):
                await sandbox.invoke(Event("invoke", b"x" * (3 << 20)))
            assert (await sandbox.invoke(Event("invoke", b"fits"))).body == b"fits"

    async def test_fuel_ends_a_loop(self, backend: WasmBackend) -> None:
        code = module_code("loops", limits=Limits(memory_mb=2, timeout_s=60, fuel=1_000_000))
        started = time.monotonic()
        with pytest.raises(FunctionTimeout, match="ran out of fuel after 1000000"):
            await call(backend, code)
        assert time.monotonic() - started < 10

    async def test_epoch_deadline_ends_a_loop(self, backend: WasmBackend) -> None:
        code = module_code("loops", limits=Limits(memory_mb=2, timeout_s=0.05))
        with pytest.raises(FunctionTimeout, match=r"exceeded 0\.05 s"):
            await call(backend, code)

    async def test_event_loop_runs_while_a_guest_loops(self, backend: WasmBackend) -> None:
        ticks = 0

        async def count() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        counter = asyncio.create_task(count())
        try:
            with pytest.raises(FunctionTimeout):
                await call(backend, module_code("loops"))
        finally:
            counter.cancel()
        # 0.3 s of guest loop: a blocked loop would have ticked at most once or twice
        assert ticks >= 10

    @BOTH_PATHS
    async def test_cpu_time_is_counted(self, backend: WasmBackend, limits: Limits) -> None:
        code = module_code("loops", limits=replace(limits, timeout_s=0.1))
        async with await loaded(backend, code) as sandbox:
            with pytest.raises(FunctionTimeout):
                await sandbox.invoke(Event("invoke", b"x"))
            assert (await sandbox.stats()).cpu_seconds > (0.02 if limits.fuel is None else 0)


class TestThreads:
    @staticmethod
    async def sandbox_threads(expected: int) -> int:
        for _ in range(200):
            alive = sum(t.name.startswith("wasm sandbox") for t in threading.enumerate())
            if alive == expected:
                break
            await asyncio.sleep(0.01)
        return alive

    async def test_threads_are_reused_and_end_with_the_backend(self) -> None:
        assert await self.sandbox_threads(0) == 0
        async with WasmBackend() as backend:
            for _ in range(3):
                await call(backend, module_code("echo"))
            assert await self.sandbox_threads(1) == 1  # one thread, passed on
            dropped = await loaded(backend, module_code("echo"))
            del dropped  # never closed: its thread must end all the same
            gc.collect()
            assert await self.sandbox_threads(0) == 0
            await call(backend, module_code("echo"))
        assert await self.sandbox_threads(0) == 0

    async def test_a_reopened_backend_still_ends_loops(self) -> None:
        backend = WasmBackend()
        await backend.start()
        await backend.aclose()
        await backend.aclose()
        async with backend:
            code = module_code("loops", limits=Limits(memory_mb=2, timeout_s=0.05))
            with pytest.raises(FunctionTimeout, match="exceeded"):
                await call(backend, code)

    async def test_aclose_waits_for_a_running_guest(self, backend: WasmBackend) -> None:
        sandbox = await loaded(backend, module_code("loops"))
        running = asyncio.create_task(sandbox.invoke(Event("invoke", b"x")))
        await asyncio.sleep(0.05)
        await sandbox.aclose()  # the store goes only once the call has ended
        with pytest.raises(FunctionTimeout):
            await asyncio.wait_for(running, 1)

    @BOTH_PATHS
    async def test_closed_while_compiling(self, backend: WasmBackend, limits: Limits) -> None:
        sandbox = backend.create()
        await sandbox.prepare()
        loading = asyncio.create_task(sandbox.load(module_code("echo", limits=limits)))
        await asyncio.sleep(0)  # the module compiles on the sandbox's thread
        await sandbox.aclose()
        with pytest.raises(SandboxStartError, match="closed while loading"):
            await loading
        assert sandbox.state is SandboxState.CLOSED

    async def test_cancelled_invoke_does_not_overlap_the_next(self, backend: WasmBackend) -> None:
        code = module_code("echo")
        async with await loaded(backend, code) as sandbox:
            first = asyncio.create_task(sandbox.invoke(Event("invoke", b"first")))
            await asyncio.sleep(0)
            first.cancel()
            assert (await sandbox.invoke(Event("invoke", b"second"))).body == b"second"


class TestHostInterface:
    async def test_log_import_reaches_the_platform_log(
        self, backend: WasmBackend, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.INFO, logger="nfaas.function"):
            assert await call(backend, module_code("logs"), b"reading 42") == b"reading 42"
        records = [r for r in caplog.records if r.name == "nfaas.function"]
        assert records[0].getMessage() == "app/logs@1: reading 42"
        assert records[0].function == "app/logs@1"  # type: ignore[attr-defined]
        assert len(records) == 2  # the out-of-bounds line is cut, not fatal

    async def test_wasi_is_refused_without_a_grant(
        self, backend: WasmBackend, tmp_path: Path
    ) -> None:
        code = module_code("wasi_stdout")
        with pytest.raises(SandboxStartError, match=r"wasi_snapshot_preview1\.fd_write.*no WASI"):
            await call(backend, code)
        with pytest.raises(SandboxStartError, match="no WASI"):
            await backend.compile(code, tmp_path)

    async def test_stdout_when_granted(
        self, backend: WasmBackend, capfd: pytest.CaptureFixture[str]
    ) -> None:
        code = module_code("wasi_stdout", wasi=WasiGrant(stdout=True))
        assert await call(backend, code) == b"written"
        assert "hello from wasm" in capfd.readouterr().out

    async def test_stdout_discarded_when_not_granted(
        self, backend: WasmBackend, capfd: pytest.CaptureFixture[str]
    ) -> None:
        code = module_code("wasi_stdout", wasi=WasiGrant(stdout=False))
        assert await call(backend, code) == b"written"
        assert "hello from wasm" not in capfd.readouterr().out

    @pytest.mark.parametrize(("env", "expected"), [(True, b"GREETING=hi\0UNIT=C\0"), (False, b"")])
    async def test_environment_only_when_granted(
        self, backend: WasmBackend, env: bool, expected: bytes
    ) -> None:
        code = module_code(
            "wasi_env", wasi=WasiGrant(env=env), environment={"GREETING": "hi", "UNIT": "C"}
        )
        assert await call(backend, code) == expected

    async def test_preopens_are_read_only(self, backend: WasmBackend, tmp_path: Path) -> None:
        (tmp_path / "calibration.txt").write_text("offset=3\n")
        grant = WasiGrant(preopens={"/data": str(tmp_path)})
        code = module_code("wasi_files", wasi=grant)
        assert await call(backend, code, b"calibration.txt") == b"offset=3\n"
        with pytest.raises(FunctionRaised, match="open failed"):
            await call(backend, replace(code, handler="create"), b"new.txt")
        assert not (tmp_path / "new.txt").exists()

    async def test_proc_exit_is_a_crash(self, backend: WasmBackend) -> None:
        code = module_code("wasi_exit", wasi=WasiGrant())
        async with await loaded(backend, code) as sandbox:
            with pytest.raises(FunctionCrashed, match="exited with status 3"):
                await sandbox.invoke(Event("invoke", b"x"))
            assert sandbox.state is SandboxState.FAILED

    async def test_missing_preopen_folder_fails_the_load(
        self, backend: WasmBackend, tmp_path: Path
    ) -> None:
        grant = WasiGrant(preopens={"/data": str(tmp_path / "absent")})
        with pytest.raises(SandboxStartError, match=r"cannot grant WASI.*absent"):
            await call(backend, module_code("wasi_files", wasi=grant))

    async def test_no_files_without_preopens(self, backend: WasmBackend) -> None:
        code = module_code("wasi_files", wasi=WasiGrant())
        with pytest.raises(FunctionRaised, match="open failed"):
            await call(backend, code, b"calibration.txt")


class TestClassifyExample:
    @pytest.mark.parametrize(
        ("reading", "label"),
        [
            (b"temp=23.5", b"ok"),
            (b'{"value": 42}', b"ok"),
            (b"humidity:55", b"warn"),
            (b"temp=79.9", b"warn"),
            (b'{"value": 80}', b"alarm"),
            (b"a=1,b=12345678901234", b"alarm"),
            (b"delta = -95", b"ok"),
            (b"73", b"warn"),
        ],
    )
    @BOTH_PATHS
    async def test_classifies_readings(
        self, backend: WasmBackend, reading: bytes, label: bytes, limits: Limits
    ) -> None:
        code = module_code("classify", handler="classify", path=CLASSIFY, limits=limits)
        assert await call(backend, code, reading) == label

    @pytest.mark.parametrize("reading", [b"", b"temp=", b"status: offline", b'{"value": null}'])
    async def test_rejects_readings_without_a_number(
        self, backend: WasmBackend, reading: bytes
    ) -> None:
        code = module_code("classify", handler="classify", path=CLASSIFY)
        async with await loaded(backend, code) as sandbox:
            with pytest.raises(FunctionRaised, match="no number in reading"):
                await sandbox.invoke(Event("invoke", reading))
            assert (await sandbox.invoke(Event("invoke", b"t=90"))).body == b"alarm"


class TestCExample:
    async def test_c_version_builds_and_classifies(
        self, backend: WasmBackend, tmp_path: Path
    ) -> None:
        if shutil.which("clang") is None or shutil.which("make") is None:
            pytest.fail(
                "clang and make are part of the project setup (see examples/wasm-c/README.md)"
            )
        make = await asyncio.create_subprocess_exec(
            "make", "-s", "-C", str(WASM_C), f"OUT={tmp_path}"
        )
        assert await asyncio.wait_for(make.wait(), 60) == 0
        code = module_code("classify-c", handler="classify", path=tmp_path / "classify.wasm")
        artefact = await backend.compile(code, tmp_path / "compiled")
        code = replace(code, compiled_path=artefact)
        async with await loaded(backend, code) as sandbox:
            for reading, label in [(b"temp=23.5", b"ok"), (b"h:55", b"warn"), (b"t=81", b"alarm")]:
                assert (await sandbox.invoke(Event("invoke", reading))).body == label
            with pytest.raises(FunctionRaised, match="no number in reading"):
                await sandbox.invoke(Event("invoke", b"offline"))


async def test_abi_document_example(
    backend: WasmBackend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    doc = (REPO / "docs/wasm-abi.md").read_text()
    wat = doc.split("```wat\n", 1)[1].split("```", 1)[0]
    (tmp_path / "shout.wat").write_text(wat)
    code = module_code("shout", handler="shout", path=tmp_path / "shout.wat")
    async with await loaded(backend, code) as sandbox:
        with caplog.at_level(logging.INFO, logger="nfaas.function"):
            assert (await sandbox.invoke(Event("invoke", b"hello, edge"))).body == b"HELLO, EDGE"
        assert "app/shout@1: hello, edge" in caplog.messages
        with pytest.raises(FunctionRaised, match=r"^empty event$"):
            await sandbox.invoke(Event("invoke", b""))
        assert sandbox.usable
