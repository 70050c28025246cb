"""Compiled Wasm modules: compiling, precompiled artefacts, and the cache that keeps both.

Compiling a module takes long (Cranelift, optimising for speed), so it happens once
per file in a backend, and always off the event loop: a ``CompiledModule`` is checked
against the ABI and its imports are already resolved (``InstancePre``), so a sandbox
pays only for instantiating it. ``ModuleCache`` keeps them by file, least recently
used out first.

A precompiled artefact (``ModuleCompiler.compile_to``, the backend's ``compile``) is
wasmtime's native code, written at packaging time so that a cold start deserializes
rather than compiles. Artefacts are trusted: they must only ever come from this
backend's own ``compile``, never from a package. An artefact's name holds its
source's digest, so that a source beside it is inspected (for the inline policy,
``wasm_inline``) only if it is the one the artefact was made from. An artefact that
cannot be used (another wasmtime, another engine configuration) falls back to the
source.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import wasmtime

from nfaas.errors import SandboxStartError
from nfaas.sandboxes.base import FunctionCode
from nfaas.sandboxes.wasm_abi import (
    ModuleShape,
    check_handler,
    check_wasi,
    inspect_module,
    read_module_source,
)
from nfaas.sandboxes.wasm_engine import WasmEngine
from nfaas.sandboxes.wasm_failures import error_summary

#: the backend's logger, whichever of its modules writes the record
log = logging.getLogger("nfaas.sandboxes.wasm")


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

    def find(self, code: FunctionCode) -> CompiledModule | None:
        """The module of ``code`` if it is compiled already: cheap enough for the event loop."""
        for path in (code.compiled_path, code.path):
            if path is not None:
                try:
                    hit = self.get(path)
                except OSError:
                    continue
                if hit is not None:
                    return hit
        return None

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


class ModuleCompiler:
    """Makes the ``CompiledModule`` of a function for one engine, through its cache.

    Every method may take long: call them from any thread but the event loop's.
    """

    def __init__(self, engine: WasmEngine, cache: ModuleCache) -> None:
        self._engine = engine
        self._cache = cache

    def compiled(self, code: FunctionCode) -> CompiledModule:
        """The module of ``code``, from its precompiled artefact when it has one."""
        if code.compiled_path is not None:
            try:
                return self._cache.get_or_make(
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
            return self._cache.get_or_make(code.path, lambda p: self._compile_file(code, p))
        except OSError as exc:
            raise SandboxStartError(
                f"{code.ref}: cannot read the module at {code.path}: {exc.strerror}"
            ) from exc

    def compile_to(self, code: FunctionCode, dest: Path) -> Path:
        """Check and compile ``code``, write its artefact into ``dest`` and return its path."""
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
        self._cache.put(ModuleCache.key(out), compiled)
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
        # The artefact's name holds its source's digest (``compile_to``): another
        # source beside it says nothing of what the artefact's code does.
        if not code.compiled_path.stem.endswith(f"-{_digest(wasm)}"):
            return None
        return wasm

    def _compile_bytes(self, code: FunctionCode, wasm: bytes) -> wasmtime.Module:
        try:
            return wasmtime.Module(self._engine.engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise SandboxStartError(
                f"{code.ref}: invalid Wasm module: {error_summary(exc)}"
            ) from exc

    def _deserialize(self, path: Path) -> wasmtime.Module:
        return wasmtime.Module.deserialize_file(self._engine.engine, str(path))

    def _checked(
        self, code: FunctionCode, module: wasmtime.Module, wasm: bytes | None
    ) -> CompiledModule:
        shape = inspect_module(module, code.ref, wasm)
        try:
            pre = self._engine.linker(shape.uses_wasi).instantiate_pre(module)
        except wasmtime.WasmtimeError as exc:
            raise SandboxStartError(
                f"{code.ref}: cannot link the module: {error_summary(exc)}"
            ) from exc
        return CompiledModule(module, shape, pre)


def _digest(wasm: bytes) -> str:
    return hashlib.sha256(wasm).hexdigest()[:16]


def _file_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)
