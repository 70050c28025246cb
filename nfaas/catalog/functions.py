"""Deployable function versions, built from stored records and code trees.

The catalog turns a stored ``FunctionRecord`` into a ``FunctionVersion`` that
function management can run: its code materialised on disk, its runtime's
backend and pool resolved, its limits taken from the descriptor. One object
per version is kept, so the event path compares identities, not contents.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from nfaas.catalog.blobs import BlobStore
from nfaas.catalog.store import FunctionRecord, StateStore
from nfaas.errors import NotFound
from nfaas.lifecycle.deployment import FunctionVersion
from nfaas.packages.descriptors import FunctionDescriptor
from nfaas.runtimes.repository import default_pool_id
from nfaas.sandboxes.base import FunctionCode, Limits, WasiGrant
from nfaas.sandboxes.registry import backend_class


class FunctionCatalog:
    def __init__(self, store: StateStore, blobs: BlobStore, code_root: Path) -> None:
        self._store = store
        self._blobs = blobs
        self._code_root = code_root
        self._versions: dict[tuple[str, str, str], FunctionVersion] = {}

    def version(self, app: str, name: str, version: str) -> FunctionVersion:
        key = (app, name, version)
        cached = self._versions.get(key)
        if cached is not None:
            return cached
        record = self._store.get_function(app, name, version)
        if record is None:
            raise NotFound(f"no function {app}/{name} version {version}")
        built = self._versions[key] = self.build(record)
        return built

    def forget(self, app: str) -> None:
        for key in [k for k in self._versions if k[0] == app]:
            del self._versions[key]

    def build(self, record: FunctionRecord) -> FunctionVersion:
        desc = FunctionDescriptor.model_validate(record.descriptor)
        runtime = self._store.get_runtime(desc.runtime.name, desc.runtime.version)
        if runtime is None:
            raise NotFound(f"{record.app}/{record.name}: runtime {desc.runtime} was deleted")
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
        if (
            backend_class(runtime.backend).code_is_file
            and len(tree) == 1
            and next(iter(tree)) == basename
        ):
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
