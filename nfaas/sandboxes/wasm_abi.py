"""The nfaas Wasm ABI: what a module exports and imports, and how bytes cross the boundary.

The full description, with a complete WAT example, is ``docs/wasm-abi.md``. In short:

    exports  memory                                  linear memory (32-bit, not shared)
             nfaas_alloc(len: i32) -> i32            a pointer to ``len`` writable bytes
             <handler>(ptr: i32, len: i32) -> i64    (out_ptr << 32) | out_len
    imports  nfaas.log(ptr: i32, len: i32)           optional: a line to the platform log
             wasi_snapshot_preview1.*                optional: only if the descriptor grants WASI

A handler result with the sign bit set is an error: the same encoding with the bit
cleared points at a UTF-8 message, and the platform raises ``FunctionRaised``.

This module checks modules against the ABI and calls their exports; ``wasm.py``
decides when, under which limits, and what a failure means.
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import wasmtime

from nfaas.errors import SandboxStartError
from nfaas.sandboxes.base import WasiGrant

_wffi: Any
try:
    # wasmtime-py's own FFI layer, private but pinned with the package (wasmtime==50.0.1).
    # ``Func.__call__`` re-reads and re-checks the function's type on every call, which
    # is most of the cost of a small invocation; ``ExportCall`` checks it once.
    from wasmtime import _ffi
    from wasmtime._func import enter_wasm as _enter_wasm

    _wffi = _ffi
except ImportError:  # pragma: no cover - another wasmtime-py: the public path below
    _wffi = None

MEMORY_EXPORT = "memory"
ALLOC_EXPORT = "nfaas_alloc"
HOST_MODULE = "nfaas"
LOG_IMPORT = "log"
WASI_MODULE = "wasi_snapshot_preview1"
ALLOC_SIGNATURE = "(i32) -> i32"
HANDLER_SIGNATURE = "(i32, i32) -> i64"
#: bytes of one ``nfaas.log`` line or one error message kept; the rest is cut
TEXT_LIMIT = 4096

_ERROR_BIT = 1 << 63
_U64 = (1 << 64) - 1
_U32 = (1 << 32) - 1


@dataclass(frozen=True, slots=True)
class ModuleShape:
    """What checking a module learnt, kept with the compiled module."""

    #: exported functions by name, with their signature as ``(i32, i32) -> i64``
    functions: Mapping[str, str] = field(default_factory=dict)
    #: names imported from wasi_snapshot_preview1, in import order
    wasi_imports: tuple[str, ...] = ()

    @property
    def uses_wasi(self) -> bool:
        return bool(self.wasi_imports)


@dataclass(frozen=True, slots=True)
class HandlerReturn:
    """A decoded handler result: where the bytes are and whether they are an error message."""

    is_error: bool
    ptr: int
    length: int


def read_module_source(path: Path, where: str) -> bytes:
    """The module at ``path`` as Wasm binary; WAT text is converted here."""
    raw = path.read_bytes()
    if raw.startswith(b"\0asm"):
        return raw
    try:
        return bytes(wasmtime.wat2wasm(raw))
    except wasmtime.WasmtimeError as exc:
        # wasmtime's message draws the line; keep its first line and the position
        text = str(exc)
        reason = text.splitlines()[0] if text else "cannot parse"
        at = re.search(r":(\d+):(\d+)", text)
        position = f" at line {at[1]}, column {at[2]}" if at else ""
        raise SandboxStartError(
            f"{where}: {path.name} is not valid WAT: {reason}{position}"
        ) from exc


def inspect_module(module: wasmtime.Module, where: str) -> ModuleShape:
    """Check the exports every nfaas module has, and that every import is one nfaas provides."""
    functions: dict[str, str] = {}
    memory: object = None
    for export in module.exports:
        ty = export.type
        if isinstance(ty, wasmtime.FuncType):
            functions[export.name] = _signature(ty)
        elif export.name == MEMORY_EXPORT:
            memory = ty
    if not isinstance(memory, wasmtime.MemoryType):
        raise SandboxStartError(
            f"{where}: the module does not export its linear memory as 'memory'"
        )
    if memory.is_64 or memory.is_shared:
        raise SandboxStartError(f"{where}: 'memory' must be a 32-bit, unshared memory")
    shape = ModuleShape(functions=functions)
    _check_function(shape, ALLOC_EXPORT, ALLOC_SIGNATURE, where)
    wasi: list[str] = []
    foreign: list[str] = []
    for imp in module.imports:
        name = imp.name or ""
        if imp.module == WASI_MODULE:
            wasi.append(name)
        elif imp.module != HOST_MODULE or name != LOG_IMPORT:
            foreign.append(f"{imp.module}.{name}")
    if foreign:
        raise SandboxStartError(
            f"{where}: the module imports {', '.join(foreign)}, which nfaas does not provide "
            f"(only {HOST_MODULE}.{LOG_IMPORT} and {WASI_MODULE}.*)"
        )
    return ModuleShape(functions=functions, wasi_imports=tuple(wasi))


def check_handler(shape: ModuleShape, handler: str, where: str) -> None:
    """The handler export exists with the signature ``(i32, i32) -> i64``."""
    _check_function(shape, handler, HANDLER_SIGNATURE, where)


def check_wasi(shape: ModuleShape, grant: WasiGrant | None, where: str) -> None:
    """Refuse a module that imports WASI when its descriptor grants none.

    Failing at load, instead of linking WASI calls that do nothing, tells the
    application provider at onboarding what their descriptor is missing.
    """
    if shape.uses_wasi and grant is None:
        names = ", ".join(f"{WASI_MODULE}.{n}" for n in shape.wasi_imports)
        raise SandboxStartError(
            f"{where}: the module imports {names} but its descriptor grants no WASI rights"
        )


def decode_return(value: int) -> HandlerReturn:
    """Split a handler's i64 result (signed, as Wasm hands it over) into its parts."""
    raw = value & _U64
    return HandlerReturn(
        is_error=bool(raw & _ERROR_BIT), ptr=(raw >> 32) & 0x7FFF_FFFF, length=raw & _U32
    )


def encode_return(ptr: int, length: int, *, error: bool = False) -> int:
    """The i64 a handler returns for ``length`` bytes at ``ptr`` (signed, as Wasm sees it)."""
    if not (0 <= ptr <= 0x7FFF_FFFF and 0 <= length <= _U32):
        raise ValueError("ptr must fit in 31 bits and length in 32")
    raw = (ptr << 32) | length | (_ERROR_BIT if error else 0)
    return raw - (1 << 64) if raw & _ERROR_BIT else raw


class ExportCall:
    """One exported function with i32 parameters and one integer result, typed once.

    Traps and errors come out as from ``Func.__call__`` (``wasmtime.Trap``,
    ``wasmtime.WasmtimeError``). Not for use from two threads at once.
    """

    def __init__(self, func: wasmtime.Func, params: int, result_i64: bool) -> None:
        self._func = func
        self._result_i64 = result_i64
        self._nparams = params
        if _wffi is not None:
            self._params: Any = (_wffi.wasmtime_val_t * params)()
            for slot in self._params:
                slot.kind = _wffi.WASMTIME_I32.value
            self._results: Any = (_wffi.wasmtime_val_t * 1)()
            self._func_ref = ctypes.byref(func._func)

    @property
    def fast(self) -> bool:
        return _wffi is not None

    def __call__(self, store: wasmtime.Store, *args: int) -> int:
        if _wffi is None:  # pragma: no cover - the public, slower path
            return cast(int, self._func(store, *args))
        for slot, arg in zip(self._params, args, strict=True):
            slot.of.i32 = arg
        with _enter_wasm(store) as trap:
            error = _wffi.wasmtime_func_call(
                store._context(),
                self._func_ref,
                self._params,
                self._nparams,
                self._results,
                1,
                trap,
            )
            if error:
                raise wasmtime.WasmtimeError._from_ptr(error)
        value = self._results[0].of
        return cast(int, value.i64 if self._result_i64 else value.i32)


@dataclass(frozen=True, slots=True)
class GuestExports:
    """An instance's side of the ABI: its memory, its allocator and one handler."""

    memory: wasmtime.Memory
    alloc: ExportCall
    handler: ExportCall

    @classmethod
    def bind(cls, instance: wasmtime.Instance, store: wasmtime.Store, handler: str) -> GuestExports:
        exports = instance.exports(store)
        return cls(
            memory=cast(wasmtime.Memory, exports[MEMORY_EXPORT]),
            alloc=ExportCall(cast(wasmtime.Func, exports[ALLOC_EXPORT]), 1, result_i64=False),
            handler=ExportCall(cast(wasmtime.Func, exports[handler]), 2, result_i64=True),
        )


def _signature(ty: wasmtime.FuncType) -> str:
    return f"({', '.join(map(str, ty.params))}) -> {', '.join(map(str, ty.results))}"


def _check_function(shape: ModuleShape, name: str, want: str, where: str) -> None:
    got = shape.functions.get(name)
    if got is None:
        raise SandboxStartError(
            f"{where}: the module has no function export {name!r}; expected {want}"
        )
    if got != want:
        raise SandboxStartError(f"{where}: export {name!r} has signature {got}; expected {want}")
