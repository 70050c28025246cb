"""Deployable function versions, built from stored records and code trees.

The catalog turns a stored ``FunctionRecord`` into a ``FunctionVersion`` that
function management can run: its code materialised on disk, its runtime's
backend and pool resolved, its limits taken from the descriptor. One object
per version is kept, so the event path compares identities, not contents.

A kept object is only good while what it was built from is unchanged: when the
store's ``catalog_generation`` moves (a version or runtime stored, changed or
deleted), each kept version is checked against its record and runtime before the
next lookup is answered. An unchanged one keeps its identity; one whose record
is gone or different (a deleted app's name onboarded again by another tenant,
with other code) is dropped and built again from the store.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nfaas.catalog.blobs import BlobStore
from nfaas.catalog.store import FunctionRecord, RuntimeRecord, StateStore, VersionKey
from nfaas.errors import NotFound
from nfaas.lifecycle.instances import FunctionVersion
from nfaas.packages.descriptors import FunctionDescriptor
from nfaas.runtimes.repository import default_pool_id
from nfaas.sandboxes.base import FunctionCode, Limits, WasiGrant
from nfaas.sandboxes.registry import backend_class


class FunctionCatalog:
    def __init__(
        self,
        store: StateStore,
        blobs: BlobStore,
        code_root: Path,
        code_is_file: Callable[[str], bool] | None = None,
    ) -> None:
        self._store = store
        #: whether a backend wants a single-file artefact as the file (see SandboxBackend)
        self._code_is_file = code_is_file or (lambda name: backend_class(name).code_is_file)
        self._blobs = blobs
        self._code_root = code_root
        self._versions: dict[VersionKey, tuple[FunctionVersion, _Source]] = {}
        self._generation = store.catalog_generation

    def version(self, app: str, name: str, version: str) -> FunctionVersion:
        if self._generation != self._store.catalog_generation:
            self._revalidate()
        key = (app, name, version)
        cached = self._versions.get(key)
        if cached is not None:
            return cached[0]
        record = self._store.get_function(app, name, version)
        if record is None:
            raise NotFound(f"no function {app}/{name} version {version}")
        runtime = self._runtime_of(record)
        built = self.build(record, runtime)
        self._versions[key] = (built, _source(record, runtime))
        return built

    def forget(self, app: str | None = None) -> None:
        """Drop the kept versions of ``app`` (of every app with None)."""
        for key in [k for k in self._versions if app is None or k[0] == app]:
            del self._versions[key]

    def _revalidate(self) -> None:
        self._generation = self._store.catalog_generation
        for key, (_, source) in list(self._versions.items()):
            if self._source_now(key) != source:
                del self._versions[key]

    def _source_now(self, key: VersionKey) -> _Source | None:
        record = self._store.get_function(*key)
        if record is None:
            return None
        ref = record.descriptor["runtime"]
        runtime = self._store.get_runtime(ref["name"], ref["version"])
        return _source(record, runtime) if runtime is not None else None

    def _runtime_of(self, record: FunctionRecord) -> RuntimeRecord:
        ref = record.descriptor["runtime"]
        runtime = self._store.get_runtime(ref["name"], ref["version"])
        if runtime is None:
            raise NotFound(
                f"{record.app}/{record.name}: runtime {ref['name']}:{ref['version']} was deleted"
            )
        return runtime

    def build(
        self, record: FunctionRecord, runtime: RuntimeRecord | None = None
    ) -> FunctionVersion:
        desc = FunctionDescriptor.model_validate(record.descriptor)
        runtime = runtime or self._runtime_of(record)
        folder = self._blobs.materialise(
            record.code_tree,
            self._code_root
            / record.app
            / record.name
            / f"{record.version}-{record.code_tree[:12]}",
        )
        tree = self._blobs.tree(record.code_tree)
        path = folder
        source = desc.code.path or desc.code.url or ""
        basename = posixpath.basename(source.rstrip("/"))
        # A single-file code artefact is given as the file itself to backends that
        # load one file (a Wasm module), and as its folder to the others.
        if self._code_is_file(runtime.backend) and len(tree) == 1 and next(iter(tree)) == basename:
            path = folder / basename
        res, scaling = desc.resources, desc.scaling
        limits = Limits(
            memory_mb=res.memory_mb,
            cpu=res.cpu,
            timeout_s=res.timeout_s,
            concurrency=scaling.concurrency,
            fuel=desc.wasm.fuel if desc.wasm else None,
        )
        wasi = None
        if desc.wasm is not None:
            rights = desc.wasm.wasi
            wasi = WasiGrant(
                stdout=rights.stdout,
                stderr=rights.stderr,
                env=rights.env,
                preopens={guest: str(folder / rel) for guest, rel in rights.preopens.items()},
            )
        code = FunctionCode(
            app=record.app,
            name=record.name,
            version=record.version,
            handler=desc.handler,
            path=path,
            limits=limits,
            environment=dict(desc.environment),
            wasi=wasi,
            compiled_path=Path(record.compiled) if record.compiled else None,
        )
        return FunctionVersion(
            tenant=record.tenant,
            descriptor=desc,
            code=code,
            backend=runtime.backend,
            pool_id=scaling.pool or default_pool_id(runtime.name, runtime.version),
        )


@dataclass(frozen=True)
class _Source:
    """What a FunctionVersion is built from: equal sources build equal versions."""

    tenant: str
    code_tree: str
    compiled: str | None
    created_at: float
    descriptor: dict[str, Any]
    backend: str


def _source(record: FunctionRecord, runtime: RuntimeRecord) -> _Source:
    return _Source(
        record.tenant,
        record.code_tree,
        record.compiled,
        record.created_at,
        record.descriptor,
        runtime.backend,
    )
