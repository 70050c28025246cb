"""The ``wasm`` backend: WebAssembly modules run by wasmtime, with fuel, memory and WASI limits.

A sandbox is one ``wasmtime.Store``, used by one thread at a time (a store must
never be used by two threads at once). ``prepare`` (EVE025 7.2.3 steps 1-3) makes
the store and takes a thread, so a runtime pool pays for both ahead of any event;
``load`` (steps 4-5) instantiates the module under the function's memory limit and
decides where the function runs: inline, on the caller's thread (the event loop),
when a call's work is bounded and small, else on its own thread. A call into Wasm
releases the GIL, so a looping guest costs the event loop nothing. Compiling a
module (the first load of it in a backend) always happens off the event loop.

The backend is assembled from one module per concept:

    wasm.py           WasmBackend (what sandboxes share) and WasmSandbox (one store)
    wasm_engine.py    the wasmtime engine, its epoch ticker and linkers, ``nfaas.log``
    wasm_cache.py     compiled modules: compiling, precompiled artefacts, their cache
    wasm_inline.py    the inline policy: which functions run on the event loop
    wasm_thread.py    a sandbox's own thread, and the spares kept for the next sandbox
    wasm_failures.py  what a trap or a bad result means: a timeout, a crash, no memory
    wasm_abi.py       the Wasm ABI: checking modules, calling their exports
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import weakref
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import ClassVar

import wasmtime

from nfaas.errors import (
    EventTooLarge,
    FunctionCrashed,
    FunctionFailure,
    FunctionRaised,
    SandboxError,
    SandboxStartError,
)
from nfaas.sandboxes.base import (
    Event,
    FunctionCode,
    Limits,
    Result,
    Sandbox,
    SandboxBackend,
    SandboxState,
    SandboxStats,
)
from nfaas.sandboxes.wasm_abi import (
    ALLOC_EXPORT,
    TEXT_LIMIT,
    GuestExports,
    ModuleShape,
    check_handler,
    check_wasi,
    decode_return,
)
from nfaas.sandboxes.wasm_cache import CompiledModule, ModuleCache, ModuleCompiler
from nfaas.sandboxes.wasm_engine import WasmEngine
from nfaas.sandboxes.wasm_failures import check_span, error_summary, guest_failure
from nfaas.sandboxes.wasm_inline import INLINE_FUEL, INLINE_MEMORY_MB, InlinePolicy
from nfaas.sandboxes.wasm_thread import GuestThread, SpareThreads

_MIB = 1 << 20
_U32 = (1 << 32) - 1
#: fuel when the descriptor sets none: the epoch deadline alone bounds the call
UNLIMITED_FUEL = (1 << 64) - 1


class WasmSandbox(Sandbox):
    """One ``wasmtime.Store`` and the instance in it, used by one thread at a time."""

    backend: ClassVar[str] = "wasm"

    def __init__(self, owner: WasmBackend) -> None:
        super().__init__()
        self._owner = owner
        self._thread: GuestThread | None = None
        self._finalizer = weakref.finalize(self, lambda: None)
        self._store: wasmtime.Store | None = None
        self._guest: GuestExports | None = None
        self._code: FunctionCode | None = None
        self._inline = False
        self._clock: Callable[[], float] = time.thread_time
        self._fuel = UNLIMITED_FUEL
        self._ticks = 1
        self._memory_limit = 0
        self._cpu_seconds = 0.0
        self._rss_bytes = 0

    @property
    def runs_inline(self) -> bool:
        """Whether the function runs on the caller's thread (the event loop): ``wasm_inline``."""
        return self._inline

    async def prepare(self) -> None:
        if self.state is not SandboxState.NEW:
            raise SandboxStartError(f"cannot prepare a sandbox in state {self.state.value}")
        # A thread now, off the event's path, in case the function turns out to need one.
        self._thread = self._owner.take_thread()
        # A sandbox dropped without aclose must not leave its thread waiting forever.
        self._finalizer = weakref.finalize(self, self._thread.stop)
        # A store is tied to no thread, only never used by two at once.
        self._store = self._owner.new_store()
        self.state = SandboxState.PREPARED

    async def load(self, code: FunctionCode) -> None:
        if self.state is not SandboxState.PREPARED or self._thread is None:
            raise SandboxStartError(f"cannot load into a sandbox in state {self.state.value}")
        self._code = code
        thread = self._thread
        try:
            compiled = self._owner.modules.find(code)
            if compiled is None:  # compiling may take long: never on the event loop
                compiled = await thread.run(lambda: self._owner.compiler.compiled(code))
                if self.state is not SandboxState.PREPARED:
                    raise SandboxStartError(f"{code.ref}: the sandbox was closed while loading")
            if self._owner.runs_inline(code.limits, compiled.shape):
                self._inline, self._clock, self._thread = True, time.monotonic, None
                self._finalizer.detach()
                self._owner.give_back_thread(thread)
                self._load_here(code, compiled)
            else:
                await thread.run(lambda: self._load_here(code, compiled))
        except SandboxStartError:
            now: SandboxState = self.state  # aclose may have run meanwhile
            if now is not SandboxState.CLOSED:
                self.state = SandboxState.FAILED
            raise
        self.state = SandboxState.LOADED

    async def invoke(self, event: Event) -> Result:
        if self.state is not SandboxState.LOADED:
            raise SandboxError(f"cannot invoke a sandbox in state {self.state.value}")
        body = event.body
        if len(body) > self._memory_limit:
            # It could never fit: the event's fault, and the instance stays as it was.
            raise EventTooLarge(
                f"an event of {len(body)} bytes cannot fit in the function's "
                f"{self._memory_limit // _MIB} MB of memory"
            )
        try:
            if self._thread is None:  # inline: its fuel bounds how long this holds the loop
                return self._invoke_here(body)
            return await self._thread.run(lambda: self._invoke_here(body))
        except FunctionFailure as exc:
            if exc.fatal and self.state is SandboxState.LOADED:
                self.state = SandboxState.FAILED
            raise

    async def stats(self) -> SandboxStats:
        # Kept by the sandbox's thread after each call: reading the store here could race one.
        return SandboxStats(rss_bytes=self._rss_bytes, cpu_seconds=self._cpu_seconds)

    async def aclose(self) -> None:
        if self.state is SandboxState.CLOSED:
            return
        self.state = SandboxState.CLOSED
        thread, self._thread = self._thread, None
        if thread is None:  # never prepared, or inline: nothing can be running
            self._lose_instance()
            return
        self._finalizer.detach()
        # The store is dropped on its own thread, after any call still running there
        # (its fuel or epoch deadline ends it); cancelling this wait does not stop the drop.
        dropped = thread.run(self._lose_instance)
        try:
            await asyncio.shield(dropped)
        except BaseException:
            thread.stop()
            raise
        self._owner.give_back_thread(thread)

    # --- on the thread that runs the function: the event loop's or its own ---------

    def _load_here(self, code: FunctionCode, compiled: CompiledModule) -> None:
        store = self._store
        assert store is not None
        check_handler(compiled.shape, code.handler, code.ref)
        check_wasi(compiled.shape, code.wasi, code.ref)
        if compiled.shape.uses_wasi:
            # Never skip this on a store linked with WASI: wasmtime aborts the process.
            try:
                store.set_wasi(self._owner.wasi_config(code))
            except wasmtime.WasmtimeError as exc:  # e.g. a preopened folder that is not there
                raise SandboxStartError(f"{code.ref}: cannot grant WASI: {exc}") from exc
        limits = code.limits
        self._memory_limit = limits.memory_mb * _MIB
        self._fuel = limits.fuel if limits.fuel is not None else self._owner.default_fuel
        self._ticks = math.ceil(limits.timeout_s / self._owner.tick_s) + 1
        store.set_limits(memory_size=self._memory_limit)
        # A start function runs at instantiation: under the same fuel and deadline.
        store.set_fuel(self._fuel)
        store.set_epoch_deadline(self._ticks)
        if compiled.shape.imports:
            self._owner.guest_context.ref = code.ref  # for nfaas.log, on this thread
        try:
            instance = compiled.pre.instantiate(store)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            self._lose_instance()
            raise SandboxStartError(
                f"{code.ref}: cannot instantiate the module: {error_summary(exc)}"
            ) from exc
        self._guest = GuestExports.bind(instance, store, code.handler)
        self._rss_bytes = self._guest.size

    def _invoke_here(self, body: bytes) -> Result:
        guest = self._guest
        if guest is None:
            raise FunctionCrashed("the instance is gone after an earlier failure")
        started = self._clock()
        guest.arm(self._fuel, self._ticks)
        try:
            ptr = 0
            length = len(body)
            if length:
                ptr = guest.alloc(length) & _U32
                check_span(guest.refresh(), ptr, length, ALLOC_EXPORT)
                guest.write(ptr, body)
            first_line_at = time.monotonic()
            out = decode_return(guest.handler(ptr, length))
            check_span(guest.refresh(), out.ptr, out.length, "the handler")
            data = guest.read(out.ptr, out.length)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            failure = self._failure(exc, guest)
            self._lose_instance()
            raise failure from exc
        except FunctionCrashed:
            self._lose_instance()
            raise
        finally:
            self._cpu_seconds += self._clock() - started
            if self._guest is not None:
                self._rss_bytes = guest.size
        if out.is_error:
            message = data[:TEXT_LIMIT].decode("utf-8", "replace")
            raise FunctionRaised(message or "the function reported an error without a message")
        return Result(body=data, first_line_at=first_line_at)

    def _failure(self, exc: Exception, guest: GuestExports) -> FunctionFailure:
        assert self._code is not None
        return guest_failure(
            exc, guest, self._code.limits, fuel=self._fuel, memory_limit=self._memory_limit
        )

    def _lose_instance(self) -> None:
        self._guest = None
        self._store = None
        self._rss_bytes = 0


class WasmBackend(SandboxBackend):
    """One wasmtime engine and what its sandboxes share."""

    name: ClassVar[str] = "wasm"
    code_is_file: ClassVar[bool] = True

    def __init__(
        self,
        *,
        tick_s: float = 0.01,
        default_fuel: int = UNLIMITED_FUEL,
        module_cache_size: int = 64,
        spare_threads: int = 16,
        inline_fuel: int = INLINE_FUEL,
        inline_memory_mb: int = INLINE_MEMORY_MB,
    ) -> None:
        self._engine = WasmEngine(tick_s)
        self.default_fuel = default_fuel
        #: a function with at most this fuel and memory runs on the event loop (0: none does)
        self.inline = InlinePolicy(fuel=inline_fuel, memory_mb=inline_memory_mb)
        self.modules = ModuleCache(module_cache_size)
        self.compiler = ModuleCompiler(self._engine, self.modules)
        self._threads = SpareThreads("wasm sandbox", spare_threads)

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            return True, f"wasmtime-py {version('wasmtime')}"
        except PackageNotFoundError:
            return True, "wasmtime-py (version unknown)"

    async def start(self) -> None:
        self._engine.start()

    def create(self) -> Sandbox:
        self._engine.start()
        return WasmSandbox(self)

    async def compile(self, code: FunctionCode, dest: Path) -> Path | None:
        self._engine.start()
        return await asyncio.to_thread(self.compiler.compile_to, code, dest)

    async def aclose(self) -> None:
        """Stop the epoch ticker: close the sandboxes first, or their deadlines never come."""
        self._threads.stop_all()
        await self._engine.aclose()
        self.modules.clear()

    @property
    def tick_s(self) -> float:
        """Period of the epoch ticker; timeouts are rounded up to whole ticks."""
        return self._engine.tick_s

    @property
    def engine(self) -> wasmtime.Engine:
        return self._engine.engine

    @property
    def guest_context(self) -> threading.local:
        """Which function each sandbox thread serves, for ``nfaas.log`` lines."""
        return self._engine.guest_context

    def take_thread(self) -> GuestThread:
        return self._threads.take()

    def give_back_thread(self, thread: GuestThread) -> None:
        if self._engine.running:
            self._threads.give_back(thread)
        else:  # a closed backend keeps no thread
            thread.stop()

    def new_store(self) -> wasmtime.Store:
        return wasmtime.Store(self.engine)

    def wasi_config(self, code: FunctionCode) -> wasmtime.WasiConfig:
        """Exactly the WASI rights the descriptor grants; nothing else is inherited."""
        grant = code.wasi
        assert grant is not None
        config = wasmtime.WasiConfig()
        config.argv = [code.name]
        if grant.stdout:
            config.inherit_stdout()
        if grant.stderr:
            config.inherit_stderr()
        if grant.env:
            config.env = list(code.environment.items())
        for guest_path, host_path in grant.preopens.items():
            try:
                config.preopen_dir(host_path, guest_path, fs_mutable=False)
            except wasmtime.WasmtimeError as exc:
                raise wasmtime.WasmtimeError(f"{exc} {host_path!r} as {guest_path!r}") from exc
        return config

    def runs_inline(self, limits: Limits, shape: ModuleShape) -> bool:
        """Whether a function may run on the event loop: see ``wasm_inline``."""
        fuel = limits.fuel if limits.fuel is not None else self.default_fuel
        return self.inline.allows(shape, fuel, limits.memory_mb)
