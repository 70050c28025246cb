"""The wasm backend's engine: one ``wasmtime.Engine``, its epoch ticker and its linkers.

Every module the engine compiles burns fuel and checks an epoch deadline. A thread
advances the engine's epoch every ``tick_s``, so that a guest past its deadline (a
number of ticks, armed before each call) traps wherever it is; a call into Wasm
releases the GIL, so the ticker keeps ticking even while the event loop's own thread
runs a guest. The ticker stops with the backend, and starts again when the backend is
used again: no guest may run without a deadline.

Two linkers, with and without WASI, define the ``nfaas.log`` host function
(``wasm_abi``). Its lines go to the ``nfaas.function`` logger, tagged with the
function that wrote them: whoever runs a guest that imports anything sets
``guest_context.ref`` on that thread first.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import wasmtime

from nfaas.sandboxes.wasm_abi import HOST_MODULE, LOG_IMPORT, MEMORY_EXPORT, TEXT_LIMIT

#: the backend's logger, whichever of its modules writes the record
log = logging.getLogger("nfaas.sandboxes.wasm")
#: where ``nfaas.log`` lines from guests go; each record carries ``function`` (its ref)
guest_log = logging.getLogger("nfaas.function")

_U32 = (1 << 32) - 1


class WasmEngine:
    """A ``wasmtime.Engine`` made on first use, with fuel and epoch interruption on."""

    def __init__(self, tick_s: float) -> None:
        #: period of the epoch ticker; timeouts are rounded up to whole ticks
        self.tick_s = tick_s
        #: which function each sandbox thread serves, for ``nfaas.log`` lines
        self.guest_context = threading.local()
        self._engine: wasmtime.Engine | None = None
        self._linkers: dict[bool, wasmtime.Linker] = {}
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def running(self) -> bool:
        """Whether the epoch ticker runs: from ``start`` (or first use) to ``aclose``."""
        return self._ticker is not None

    @property
    def engine(self) -> wasmtime.Engine:
        """The engine; using it starts the ticker again after ``aclose``."""
        self.start()
        assert self._engine is not None
        return self._engine

    def linker(self, wasi: bool) -> wasmtime.Linker:
        """The linker for a module that imports WASI (or not); the engine must be made."""
        return self._linkers[wasi]

    def start(self) -> None:
        if self._engine is None:
            self._engine = self._new_engine()
        if self._ticker is None:
            # Also after aclose: a backend used again must not run guests without deadlines.
            self._stop = threading.Event()
            self._ticker = threading.Thread(
                target=self._tick, args=(self._engine, self._stop), name="wasm epoch", daemon=True
            )
            self._ticker.start()

    async def aclose(self) -> None:
        """Stop the epoch ticker; the engine stays, for a backend used again."""
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            self._stop.set()
            await asyncio.to_thread(ticker.join)

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
