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
decides when and under which limits, ``wasm_failures.py`` what a failure means.
"""

from __future__ import annotations

import ctypes
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import wasmtime

from nfaas.errors import SandboxStartError
from nfaas.sandboxes.base import WasiGrant

_wffi: Any = None
try:
    # wasmtime-py's own FFI layer, private but pinned with the package (wasmtime==50.0.1).
    # ``Func.__call__`` re-reads and re-checks the function's type on every call, and
    # ``Memory.read``/``write`` ask for the memory's size and address on every access:
    # most of the cost of a small invocation. ``ExportCall`` and ``GuestExports`` check
    # types once, at load, then call the C API with what they looked up then.
    from wasmtime import _ffi
    from wasmtime._func import maybe_raise_last_exn as _raise_host_exception

    def _bind(lib: ctypes.CDLL, name: str, args: list[Any], result: Any) -> Any:
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, result
        return fn

    # Our own handles on the library, so that our argument types leave wasmtime-py's alone.
    # A call into Wasm releases the GIL (CDLL): a long guest must not hold up other threads,
    # and the epoch ticker (a Python thread) must keep ticking while it runs. The store and
    # memory accessors cannot block, so they keep the GIL (PyDLL) rather than pay a release.
    _guest_lib = ctypes.CDLL(str(_ffi.filename))
    _host_lib = ctypes.PyDLL(str(_ffi.filename))
    _VOID = ctypes.c_void_p
    _call = _bind(
        _guest_lib, "wasmtime_func_call_unchecked", [_VOID] * 3 + [ctypes.c_size_t, _VOID], _VOID
    )
    _set_fuel = _bind(_host_lib, "wasmtime_context_set_fuel", [_VOID, ctypes.c_uint64], _VOID)
    _set_deadline = _bind(
        _host_lib, "wasmtime_context_set_epoch_deadline", [_VOID, ctypes.c_uint64], None
    )
    _memory_base = _bind(_host_lib, "wasmtime_memory_data", [_VOID, _VOID], _VOID)
    _memory_size = _bind(_host_lib, "wasmtime_memory_data_size", [_VOID, _VOID], ctypes.c_size_t)
    _export_get = _bind(
        _host_lib,
        "wasmtime_instance_export_get",
        [_VOID, _VOID, ctypes.c_char_p, ctypes.c_size_t, _VOID],
        ctypes.c_bool,
    )
    #: 64-bit slots in one wasmtime_val_raw_t (whose i32 and i64 are little-endian)
    _RAW_SLOTS = ctypes.sizeof(_ffi.wasmtime_val_raw_t) // 8
    if sys.byteorder == "little":
        _wffi = _ffi
except (ImportError, AttributeError, OSError):  # pragma: no cover - another wasmtime-py
    pass

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
_CODE_SECTION = 10
#: Instructions that burn one unit of fuel for work that grows with an operand, by prefix
#: byte and sub-opcode: bulk memory and tables (memory.init/copy/fill, table.init/copy/
#: grow/fill), GC arrays (array.new, new_default, new_data, new_elem, fill, copy,
#: init_data, init_elem) and atomic waits (which sleep up to their timeout).
_UNMETERED = {
    0xFC: frozenset({8, 10, 11, 12, 14, 15, 17}),
    0xFB: frozenset({6, 7, 9, 10, 16, 17, 18, 19}),
    0xFE: frozenset({1, 2}),
}


@dataclass(frozen=True, slots=True)
class ModuleShape:
    """What checking a module learnt, kept with the compiled module."""

    #: exported functions by name, with their signature as ``(i32, i32) -> i64``
    functions: Mapping[str, str] = field(default_factory=dict)
    #: names imported from wasi_snapshot_preview1, in import order
    wasi_imports: tuple[str, ...] = ()
    #: every import, as ``module.name``
    imports: tuple[str, ...] = ()
    #: whether a call's work is bounded by the fuel it burns: no import (a host call
    #: runs outside fuel) and no unmetered instruction (``_UNMETERED``). False when the
    #: module's bytes were not at hand to check (a precompiled artefact alone).
    fuel_bounded: bool = False

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


def inspect_module(module: wasmtime.Module, where: str, wasm: bytes | None = None) -> ModuleShape:
    """Check the exports every nfaas module has, and that every import is one nfaas provides.

    ``wasm`` is the module's binary, when at hand: only then can ``fuel_bounded`` be true.
    """
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
    imports: list[str] = []
    foreign: list[str] = []
    for imp in module.imports:
        name = imp.name or ""
        imports.append(f"{imp.module}.{name}")
        if imp.module == WASI_MODULE:
            wasi.append(name)
        elif imp.module != HOST_MODULE or name != LOG_IMPORT:
            foreign.append(f"{imp.module}.{name}")
    if foreign:
        raise SandboxStartError(
            f"{where}: the module imports {', '.join(foreign)}, which nfaas does not provide "
            f"(only {HOST_MODULE}.{LOG_IMPORT} and {WASI_MODULE}.*)"
        )
    bounded = wasm is not None and not imports and not may_run_unmetered(wasm)
    return ModuleShape(functions, tuple(wasi), tuple(imports), fuel_bounded=bounded)


def may_run_unmetered(wasm: bytes) -> bool:
    """Whether the code of a valid module may hold an instruction fuel does not bound.

    Conservative: the code section is searched for the instructions' bytes, not decoded,
    so an immediate that happens to hold the same two bytes also counts (the function
    then merely keeps its own thread).
    """
    code = _section(wasm, _CODE_SECTION)
    for prefix, sub_opcodes in _UNMETERED.items():
        at = code.find(prefix)
        while 0 <= at < len(code) - 1:
            # A sub-opcode is a LEB128 u32; below 128, its low 7 bits are the first byte's.
            if (code[at + 1] & 0x7F) in sub_opcodes:
                return True
            at = code.find(prefix, at + 1)
    return False


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
    """One exported function of a store, with i32 parameters and one integer result.

    The signature must have been checked (``check_handler``, ``inspect_module``): the
    call itself does not check it again (``wasmtime_func_call_unchecked``). Traps and
    errors come out as from ``Func.__call__`` (``wasmtime.Trap``, ``wasmtime.WasmtimeError``).
    Not for use from two threads at once.
    """

    def __init__(
        self, store: wasmtime.Store, func: wasmtime.Func, params: int, result_i64: bool
    ) -> None:
        self._store = store
        self._func = func
        self._params = params
        self._result_i64 = result_i64
        if _wffi is not None:
            self._context = _context(store)
            self._func_at = ctypes.addressof(func._func)
            # Arguments in, result out, in place: two raw values, as 64-bit slots.
            self._values = (ctypes.c_int64 * (2 * _RAW_SLOTS))()
            self._values_at = ctypes.addressof(self._values)
            self._trap = ctypes.c_void_p()
            self._trap_at = ctypes.addressof(self._trap)

    @property
    def fast(self) -> bool:
        return _wffi is not None

    def __call__(self, a: int, b: int = 0) -> int:
        if _wffi is None:  # pragma: no cover - the public, slower path
            return cast(int, self._func(self._store, *(a, b)[: self._params]))
        values = self._values
        values[0] = a
        values[_RAW_SLOTS] = b
        error = _call(self._context, self._func_at, self._values_at, 2, self._trap_at)
        if error is not None or self._trap.value is not None:
            self._fail(error)
        if self._result_i64:
            return values[0]
        # i32 results are signed, as wasmtime-py hands them over
        return ((values[0] & _U32) ^ 0x8000_0000) - 0x8000_0000

    def _fail(self, error: int | None) -> None:
        # What wasmtime-py's ``enter_wasm`` does, without a context manager on every call.
        trap_at, self._trap.value = self._trap.value, None
        trap = None
        if trap_at is not None:
            trap = wasmtime.Trap._from_ptr(ctypes.cast(trap_at, ctypes.POINTER(_wffi.wasm_trap_t)))
        if error is not None:
            raised: Exception = _error(error)
        else:
            assert trap is not None
            raised = trap
        # A host function that raised parked its exception for us: it comes first.
        _raise_host_exception()
        raise raised


class GuestExports:
    """An instance's side of the ABI, bound to its store: its memory, allocator and handler.

    What does not change from one call to the next is looked up once: the store's
    context, the exports' handles, the buffers for arguments. The memory's size and
    address are read again only by ``refresh``, after a call that may have grown it.
    Not for use from two threads at once.
    """

    def __init__(
        self,
        store: wasmtime.Store,
        memory: wasmtime.Memory,
        alloc: wasmtime.Func,
        handler: wasmtime.Func,
    ) -> None:
        self.store = store
        self.memory = memory
        self.alloc = ExportCall(store, alloc, 1, result_i64=False)
        self.handler = ExportCall(store, handler, 2, result_i64=True)
        #: bytes of linear memory as of the last ``refresh``
        self.size = 0
        self._base = 0
        if _wffi is not None:
            self._context = self.alloc._context
            self._memory_at = ctypes.addressof(memory._memory)

    @classmethod
    def bind(cls, instance: wasmtime.Instance, store: wasmtime.Store, handler: str) -> GuestExports:
        """The exports of a checked instance (``inspect_module``, ``check_handler``)."""
        bound = cls(
            store,
            cast(wasmtime.Memory, _export(instance, store, MEMORY_EXPORT)),
            cast(wasmtime.Func, _export(instance, store, ALLOC_EXPORT)),
            cast(wasmtime.Func, _export(instance, store, handler)),
        )
        bound.refresh()
        return bound

    def arm(self, fuel: int, ticks: int) -> None:
        """Fuel and an epoch deadline for the next entry into Wasm."""
        if _wffi is None:  # pragma: no cover - the public path
            self.store.set_fuel(fuel)
            self.store.set_epoch_deadline(ticks)
            return
        error = _set_fuel(self._context, fuel)
        if error is not None:
            raise _error(error)
        _set_deadline(self._context, ticks)

    def refresh(self) -> int:
        """The size of linear memory, read again: after any call that may have grown it."""
        if _wffi is None:  # pragma: no cover - the public path
            self.size = self.memory.data_len(self.store)
            return self.size
        size: int = _memory_size(self._context, self._memory_at)
        if size != self.size:
            # Only a grown memory may have moved; one that kept its size has not.
            self._base = _memory_base(self._context, self._memory_at) or 0
            self.size = size
        return size

    def write(self, ptr: int, data: bytes) -> None:
        """Copy ``data`` to ``ptr``, which must lie in memory as of the last ``refresh``."""
        self._check(ptr, len(data))
        if _wffi is None:  # pragma: no cover - the public path
            self.memory.write(self.store, data, ptr)
            return
        ctypes.memmove(self._base + ptr, data, len(data))

    def read(self, ptr: int, length: int) -> bytes:
        """The ``length`` bytes at ``ptr``, which must lie in memory as of the last ``refresh``."""
        self._check(ptr, length)
        if _wffi is None:  # pragma: no cover - the public path
            return bytes(self.memory.read(self.store, ptr, ptr + length))
        return ctypes.string_at(self._base + ptr, length)

    def _check(self, ptr: int, length: int) -> None:
        # Raw copies: a span past the end would read or write the platform's own memory.
        if ptr < 0 or length < 0 or ptr + length > self.size:
            raise IndexError(f"bytes {ptr}..{ptr + length} are outside linear memory")


def _export(instance: wasmtime.Instance, store: wasmtime.Store, name: str) -> Any:
    """One export by name; ``Instance.exports`` would look up every export and its type."""
    if _wffi is None:  # pragma: no cover - the public path
        return instance.exports(store)[name]
    item = _wffi.wasmtime_extern_t()
    raw = name.encode()
    at = ctypes.addressof
    if not _export_get(_context(store), at(instance._instance), raw, len(raw), at(item)):
        raise KeyError(name)
    if item.kind == _wffi.WASMTIME_EXTERN_FUNC.value:
        return wasmtime.Func._from_raw(item.of.func)
    if item.kind == _wffi.WASMTIME_EXTERN_MEMORY.value:
        return wasmtime.Memory._from_raw(item.of.memory)
    raise KeyError(f"{name} is neither a function nor a memory")


def _context(store: wasmtime.Store) -> int:
    """The address of the store's context, valid as long as the store."""
    return cast(int, ctypes.c_void_p.from_buffer(store._context()).value)


def _error(error: int) -> wasmtime.WasmtimeError:
    # ``_from_ptr`` takes ownership, and makes an ``ExitTrap`` of a WASI proc_exit.
    return wasmtime.WasmtimeError._from_ptr(
        ctypes.cast(error, ctypes.POINTER(_wffi.wasmtime_error_t))
    )


def _section(wasm: bytes, wanted: int) -> bytes:
    """The payload of the section with id ``wanted`` of a valid module, or nothing."""
    pos = 8  # magic and version
    while pos < len(wasm):
        kind = wasm[pos]
        size, pos = _uleb128(wasm, pos + 1)
        if kind == wanted:
            return wasm[pos : pos + size]
        pos += size
    return b""


def _uleb128(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


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
