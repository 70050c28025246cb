"""The ``wasm`` backend: WebAssembly modules run by wasmtime, with fuel, memory and WASI limits.

The backend owns one ``wasmtime.Engine`` (fuel and epoch interruption on), a
thread that advances the engine's epoch every ``tick_s`` so that a guest past
its deadline traps, two linkers (with and without WASI) and a small cache of
compiled modules whose imports are already resolved (``InstancePre``).

A sandbox is one ``wasmtime.Store``, used by one thread at a time (a store must
never be used by two threads at once). ``prepare`` (EVE025 7.2.3 steps 1-3) makes
the store and takes a thread, so a runtime pool pays for both ahead of any event;
``load`` (steps 4-5) instantiates the module under the function's memory limit and
decides where the function runs:

* **Inline**, on the caller's thread (the event loop), when a call's work is bounded
  and small: the module imports nothing (a host call runs outside fuel), its code
  holds no instruction that burns one unit of fuel for work that grows with an
  operand (bulk memory and table instructions, GC arrays, atomic waits; see
  ``wasm_abi.may_run_unmetered``), its fuel budget is at most ``inline_fuel`` and its
  memory limit at most ``inline_memory_mb``. Fuel is counted per instruction, so the
  budget bounds a call's work deterministically, whatever the machine's load; the
  memory limit bounds the pages a call can touch for the first time, which the
  kernel zeroes outside fuel. Measured on the 2-core development VM, the dearest
  instructions per unit of fuel are loads that miss the caches (a pointer chase,
  up to ~140 ns per unit; a plain loop burns one in ~3.4 ns), and a page touched
  first costs ~4.7 us. At the defaults (20,000 fuel, 4 MB) a call holds the event
  loop for at most ~3 ms of instructions, plus at most ~5 ms of first touches over
  the instance's whole life (measured worst calls: 1.8 ms chasing pointers, 4.8 ms
  growing and touching all 4 MB). The epoch deadline stays armed: a call into
  Wasm releases the GIL, so the ticker keeps ticking. Such a function skips both
  thread crossings (~0.1 ms on this VM), which cost more than the call itself.
* On **its own thread** otherwise (no fuel, a larger budget, imports, unmetered
  instructions, or a precompiled module whose source is not at hand to check). A
  call into Wasm releases the GIL, so a looping guest costs the event loop nothing.
  A closed sandbox's thread is kept for the next one (up to ``spare_threads``):
  starting a thread costs more than the rest of a cold start.

Compiling a module (the first load of it in a backend) always happens off the event loop.

How failures are told apart (``WasmSandbox._failure``):

    trap OUT_OF_FUEL                          FunctionTimeout  "ran out of fuel after N"
    trap INTERRUPT (epoch deadline)           FunctionTimeout  "exceeded N s"
    WASI proc_exit                            FunctionCrashed  "exited with status N"
    any other trap, memory at its ceiling     FunctionOutOfMemory
    any other trap, or a result out of bounds FunctionCrashed  (wasmtime's trap message)
    negative handler result                   FunctionRaised   (the instance survives)

Memory is at its ceiling when one more 64 KiB page would pass the store's limit
(or the module's own maximum): ``memory.grow`` then returns -1, and whatever the
guest does next (``unreachable``, an abort, a write through a null pointer) is a
consequence of running out of memory. wasmtime-py exposes no resource-limiter
callback, so this is decided after the trap, from the memory's size.

Precompiled artefacts (``compile``) are wasmtime's native code: they are trusted
and must only ever come from this backend's own ``compile``, never from a package.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import queue
import re
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import wasmtime

from nfaas.errors import (
    EventTooLarge,
    FunctionCrashed,
    FunctionFailure,
    FunctionOutOfMemory,
    FunctionRaised,
    FunctionTimeout,
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
    HOST_MODULE,
    LOG_IMPORT,
    MEMORY_EXPORT,
    TEXT_LIMIT,
    GuestExports,
    ModuleShape,
    check_handler,
    check_wasi,
    decode_return,
    inspect_module,
    read_module_source,
)

log = logging.getLogger(__name__)
#: where ``nfaas.log`` lines from guests go; each record carries ``function`` (its ref)
guest_log = logging.getLogger("nfaas.function")

T = TypeVar("T")
_MIB = 1 << 20
_PAGE = 1 << 16
_U32 = (1 << 32) - 1
#: fuel when the descriptor sets none: the epoch deadline alone bounds the call
UNLIMITED_FUEL = (1 << 64) - 1
#: Defaults of the inline policy (module doc), for a worst-case stall of the event loop of
#: a few ms: measured on the 2-core development VM, at most ~140 ns of work per unit of
#: fuel (a pointer chase; a plain loop burns one in ~3.4 ns) and ~4.7 us per 4 KiB page
#: touched first. The example classify function burns ~300 units per event.
INLINE_FUEL = 20_000
INLINE_MEMORY_MB = 4


@dataclass(frozen=True, slots=True)
class CompiledModule:
    """A module ready to instantiate: checked, with its imports already resolved."""

    module: wasmtime.Module
    shape: ModuleShape
    pre: wasmtime.InstancePre


class ModuleCache:
    """Compiled modules by file, least recently used out first; safe from any thread.

    The key holds the file's mtime and size, so a file rewritten in place is
    compiled again rather than served stale.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, int, int], CompiledModule] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(path: Path) -> tuple[str, int, int]:
        st = path.stat()
        return (str(path), st.st_mtime_ns, st.st_size)

    def get(self, path: Path) -> CompiledModule | None:
        return self._get(self.key(path))

    def get_or_make(self, path: Path, make: Callable[[Path], CompiledModule]) -> CompiledModule:
        key = self.key(path)
        hit = self._get(key)
        # Compiling can take long: not under the lock (two threads may both compile).
        return hit if hit is not None else self.put(key, make(path))

    def _get(self, key: tuple[str, int, int]) -> CompiledModule | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
            return hit

    def put(self, key: tuple[str, int, int], compiled: CompiledModule) -> CompiledModule:
        with self._lock:
            self._items[key] = compiled
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return compiled

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class GuestThread:
    """A sandbox's own thread: runs jobs one at a time and hands results to the event loop.

    Lighter than a one-worker ``ThreadPoolExecutor`` (a queue and a callback per
    job), which matters on the cold path. A job whose awaiter was cancelled still
    runs to its end; its result is dropped.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[
            tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[[], Any]] | None
        ]
        self._jobs = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def run(self, job: Callable[[], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, future, job))
        return future

    def stop(self) -> None:
        """The thread ends after the jobs already queued."""
        self._jobs.put(None)

    def _serve(self) -> None:
        while (item := self._jobs.get()) is not None:
            self._run_one(*item)
            # No reference to the last job may outlive it: it would keep its sandbox alive.
            del item

    @staticmethod
    def _run_one(
        loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], job: Callable[[], Any]
    ) -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (job(), None)
        except BaseException as exc:
            outcome = (None, exc)
        try:
            loop.call_soon_threadsafe(_settle, future, *outcome)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is None:
        future.set_result(result)
    else:
        future.set_exception(exc)


class WasmSandbox(Sandbox):
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
        """Whether the function runs on the caller's thread (the event loop), see the module doc."""
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
            compiled = self._owner.cached_module(code)
            if compiled is None:  # compiling may take long: never on the event loop
                compiled = await thread.run(lambda: self._owner.compiled_module(code))
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
                f"{code.ref}: cannot instantiate the module: {_summary(exc)}"
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
                _check_span(guest.refresh(), ptr, length, ALLOC_EXPORT)
                guest.write(ptr, body)
            first_line_at = time.monotonic()
            out = decode_return(guest.handler(ptr, length))
            _check_span(guest.refresh(), out.ptr, out.length, "the handler")
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
        code = exc.trap_code if isinstance(exc, wasmtime.Trap) else None
        if code is wasmtime.TrapCode.OUT_OF_FUEL:
            return FunctionTimeout(f"ran out of fuel after {self._fuel}", fuel=self._fuel)
        if code is wasmtime.TrapCode.INTERRUPT:
            timeout = self._code.limits.timeout_s
            return FunctionTimeout(f"exceeded {timeout:g} s", timeout_s=timeout)
        if isinstance(exc, wasmtime.ExitTrap):
            return FunctionCrashed(f"the module exited with status {exc.code}", status=exc.code)
        summary = _summary(exc)
        if self._at_memory_ceiling(guest):
            mb = self._code.limits.memory_mb
            return FunctionOutOfMemory(f"linear memory reached its {mb} MB limit, then: {summary}")
        return FunctionCrashed(summary, trap=code.name.lower() if code else None)

    def _at_memory_ceiling(self, guest: GuestExports) -> bool:
        ceiling = self._memory_limit
        declared = guest.memory.type(guest.store).limits.max
        if declared is not None:
            ceiling = min(ceiling, declared * _PAGE)
        return guest.refresh() + _PAGE > ceiling

    def _lose_instance(self) -> None:
        self._guest = None
        self._store = None
        self._rss_bytes = 0


def _check_span(size: int, ptr: int, length: int, who: str) -> None:
    if ptr + length > size:
        raise FunctionCrashed(
            f"{who} gave bytes {ptr}..{ptr + length} outside linear memory ({size} bytes)"
        )


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
        #: period of the epoch ticker; timeouts are rounded up to whole ticks
        self.tick_s = tick_s
        self.default_fuel = default_fuel
        #: a function with at most this fuel and memory runs on the event loop (0: none does)
        self.inline_fuel = inline_fuel
        self.inline_memory_mb = inline_memory_mb
        self.modules = ModuleCache(module_cache_size)
        #: which function each sandbox thread serves, for ``nfaas.log`` lines
        self.guest_context = threading.local()
        self._engine: wasmtime.Engine | None = None
        self._linkers: dict[bool, wasmtime.Linker] = {}
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()
        #: threads of closed sandboxes, kept to spare the next sandbox a thread start
        self._spare_threads: list[GuestThread] = []
        self._spare_limit = spare_threads
        self._thread_count = 0

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            return True, f"wasmtime-py {version('wasmtime')}"
        except PackageNotFoundError:
            return True, "wasmtime-py (version unknown)"

    async def start(self) -> None:
        self._ensure_started()

    def create(self) -> Sandbox:
        self._ensure_started()
        return WasmSandbox(self)

    async def compile(self, code: FunctionCode, dest: Path) -> Path | None:
        self._ensure_started()
        return await asyncio.to_thread(self._compile_here, code, dest)

    async def aclose(self) -> None:
        """Stop the epoch ticker: close the sandboxes first, or their deadlines never come."""
        ticker, self._ticker = self._ticker, None
        spares, self._spare_threads = self._spare_threads, []
        for thread in spares:
            thread.stop()
        if ticker is not None:
            self._stop.set()
            await asyncio.to_thread(ticker.join)
        self.modules.clear()

    @property
    def engine(self) -> wasmtime.Engine:
        self._ensure_started()
        assert self._engine is not None
        return self._engine

    def take_thread(self) -> GuestThread:
        if self._spare_threads:
            return self._spare_threads.pop()
        self._thread_count += 1
        return GuestThread(f"wasm sandbox {self._thread_count}")

    def give_back_thread(self, thread: GuestThread) -> None:
        if self._ticker is not None and len(self._spare_threads) < self._spare_limit:
            self._spare_threads.append(thread)
        else:
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
        """Whether a function may run on the event loop: see the module doc."""
        fuel = limits.fuel if limits.fuel is not None else self.default_fuel
        return (
            shape.fuel_bounded
            and fuel <= self.inline_fuel
            and limits.memory_mb <= self.inline_memory_mb
        )

    def cached_module(self, code: FunctionCode) -> CompiledModule | None:
        """The module of ``code`` if it is compiled already: cheap enough for the event loop."""
        for path in (code.compiled_path, code.path):
            if path is not None:
                try:
                    hit = self.modules.get(path)
                except OSError:
                    continue
                if hit is not None:
                    return hit
        return None

    def compiled_module(self, code: FunctionCode) -> CompiledModule:
        """The module of ``code``, from its precompiled artefact when it has one; any thread."""
        if code.compiled_path is not None:
            try:
                return self.modules.get_or_make(
                    code.compiled_path,
                    lambda p: self._checked(code, self._deserialize(p), self._source(code)),
                )
            except (OSError, wasmtime.WasmtimeError) as exc:
                # A stale artefact (another wasmtime, another engine config) is not fatal.
                log.warning(
                    "%s: cannot use %s (%s); compiling from source",
                    code.ref,
                    code.compiled_path,
                    exc,
                )
        try:
            return self.modules.get_or_make(code.path, lambda p: self._compile_file(code, p))
        except OSError as exc:
            raise SandboxStartError(
                f"{code.ref}: cannot read the module at {code.path}: {exc.strerror}"
            ) from exc

    def _ensure_started(self) -> None:
        if self._engine is None:
            self._engine = self._new_engine()
        if self._ticker is None:
            # Also after aclose: a backend used again must not run guests without deadlines.
            self._stop = threading.Event()
            self._ticker = threading.Thread(
                target=self._tick, args=(self._engine, self._stop), name="wasm epoch", daemon=True
            )
            self._ticker.start()

    def _new_engine(self) -> wasmtime.Engine:
        config = wasmtime.Config()
        config.consume_fuel = True
        config.epoch_interruption = True
        config.cranelift_opt_level = "speed"
        engine = wasmtime.Engine(config)
        log_type = wasmtime.FuncType([wasmtime.ValType.i32(), wasmtime.ValType.i32()], [])
        for with_wasi in (False, True):
            linker = wasmtime.Linker(engine)
            linker.define_func(
                HOST_MODULE, LOG_IMPORT, log_type, self._guest_log, access_caller=True
            )
            if with_wasi:
                linker.define_wasi()
            self._linkers[with_wasi] = linker
        return engine

    def _tick(self, engine: wasmtime.Engine, stop: threading.Event) -> None:
        while not stop.wait(self.tick_s):
            engine.increment_epoch()

    def _compile_here(self, code: FunctionCode, dest: Path) -> Path:
        try:
            wasm = read_module_source(code.path, code.ref)
        except OSError as exc:
            raise SandboxStartError(
                f"{code.ref}: cannot read the module at {code.path}: {exc.strerror}"
            ) from exc
        compiled = self._checked(code, self._compile_bytes(code, wasm), wasm)
        check_handler(compiled.shape, code.handler, code.ref)
        check_wasi(compiled.shape, code.wasi, code.ref)
        dest.mkdir(parents=True, exist_ok=True)
        out = dest / f"{_file_safe(code.name)}-{_file_safe(code.version)}-{_digest(wasm)}.cwasm"
        partial = out.with_name(out.name + ".partial")
        partial.write_bytes(compiled.module.serialize())
        # deserialize_file maps the file: once in place it must never change.
        os.replace(partial, out)
        self.modules.put(ModuleCache.key(out), compiled)
        return out

    def _compile_file(self, code: FunctionCode, path: Path) -> CompiledModule:
        wasm = read_module_source(path, code.ref)
        return self._checked(code, self._compile_bytes(code, wasm), wasm)

    @staticmethod
    def _source(code: FunctionCode) -> bytes | None:
        """The bytes the artefact was compiled from, to see what its code does; if at hand."""
        try:
            wasm = read_module_source(code.path, code.ref)
        except (OSError, SandboxStartError):
            return None
        assert code.compiled_path is not None
        # The artefact's name holds its source's digest (``_compile_here``): another
        # source beside it says nothing of what the artefact's code does.
        if not code.compiled_path.stem.endswith(f"-{_digest(wasm)}"):
            return None
        return wasm

    def _compile_bytes(self, code: FunctionCode, wasm: bytes) -> wasmtime.Module:
        try:
            return wasmtime.Module(self.engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise SandboxStartError(f"{code.ref}: invalid Wasm module: {_summary(exc)}") from exc

    def _deserialize(self, path: Path) -> wasmtime.Module:
        return wasmtime.Module.deserialize_file(self.engine, str(path))

    def _checked(
        self, code: FunctionCode, module: wasmtime.Module, wasm: bytes | None
    ) -> CompiledModule:
        shape = inspect_module(module, code.ref, wasm)
        try:
            pre = self._linkers[shape.uses_wasi].instantiate_pre(module)
        except wasmtime.WasmtimeError as exc:
            raise SandboxStartError(f"{code.ref}: cannot link the module: {_summary(exc)}") from exc
        return CompiledModule(module, shape, pre)

    def _guest_log(self, caller: wasmtime.Caller, ptr: int, length: int) -> None:
        # Never raise here: wasmtime-py parks a host exception in a process-wide slot,
        # where a call on another thread could pick it up.
        try:
            memory = caller.get(MEMORY_EXPORT)
            if not isinstance(memory, wasmtime.Memory):
                return
            start = ptr & _U32
            text = memory.read(caller, start, start + min(length & _U32, TEXT_LIMIT))
            ref = getattr(self.guest_context, "ref", "?")
            guest_log.info("%s: %s", ref, text.decode("utf-8", "replace"), extra={"function": ref})
        except Exception:
            log.exception("nfaas.log from a guest failed")


def _summary(exc: Exception) -> str:
    """wasmtime's message without its backtrace: the 'Caused by' lines, or the first line."""
    text = str(exc).strip()
    head, sep, cause = text.partition("Caused by:")
    lines = [line.strip() for line in (cause if sep else head).splitlines() if line.strip()]
    summary = "; ".join(lines) if sep else (lines[0] if lines else type(exc).__name__)
    if isinstance(exc, wasmtime.Trap):
        frames = exc.frames
        if frames and frames[0].func_name:
            summary += f" (in {frames[0].func_name})"
    return summary


def _digest(wasm: bytes) -> str:
    return hashlib.sha256(wasm).hexdigest()[:16]


def _file_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)
