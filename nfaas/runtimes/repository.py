"""The FaaS Runtime Software Repository, FRSR (EVE025 7.2.1, gap #1.1).

Runtimes are indexed by name and version; each names the sandbox backend that
runs it. Descriptors reference runtimes by name and version, and onboarding
refuses a package whose runtime is not here. The runtimes the built-in
backends need are registered on first start, with a runtime pool each.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterable

from nfaas.catalog.store import PoolRecord, RuntimeRecord, StateStore
from nfaas.errors import BackendUnavailable, Conflict, InvalidRequest, NotFound, UnknownRuntime
from nfaas.packages.descriptors import NAME_PATTERN, VERSION_PATTERN, RuntimeRef
from nfaas.sandboxes.registry import BACKENDS

#: (runtime, backend, description, memory of one prepared sandbox, default pool size or
#: None for a runtime without sandboxes to pool)
BUILTIN_RUNTIMES: tuple[tuple[RuntimeRef, str, str, int, int | None], ...] = (
    (
        RuntimeRef(name="python", version="3.11"),
        "process",
        "CPython 3.11 functions `def handle(event, context)`, forked from a warm zygote",
        12,
        2,
    ),
    (
        RuntimeRef(name="wasm", version="1"),
        "wasm",
        "WebAssembly modules on wasmtime with fuel and memory limits (see docs/wasm-abi.md)",
        1,
        2,
    ),
    (
        RuntimeRef(name="python-container", version="3.11"),
        "container",
        "CPython 3.11 functions in runc containers (own namespaces, cgroup limits, read-only root)",
        16,
        None,
    ),
    (
        RuntimeRef(name="python-vm", version="3.11"),
        "microvm",
        "CPython 3.11 functions in QEMU microVMs restored from a snapshot (`nfaas microvm build`)",
        512,
        None,
    ),
    (
        RuntimeRef(name="ebpf", version="1"),
        "ebpf",
        "eBPF VNFs (XDP, tc) loaded with libbpf and attached to hooks (see docs/ebpf.md)",
        0,
        None,
    ),
)


def builtin_artefacts(backend: str) -> dict[str, str]:
    """What a built-in runtime of ``backend`` runs: for a microVM, its image's artefacts."""
    if backend != "microvm":
        return {}
    from nfaas.sandboxes.microvm.image import default_image_dir, image_artefacts, load_image

    try:
        return image_artefacts(load_image(default_image_dir()))
    except BackendUnavailable:
        return {}


def default_pool_id(name: str, version: str) -> str:
    return f"{name}-{version}".replace(".", "-")


class RuntimeRepository:
    def __init__(self, store: StateStore, backends: Iterable[str] = BACKENDS) -> None:
        self._store = store
        #: the sandbox backends a runtime may name (the registry's, plus any a test wires in)
        self._backends = frozenset(backends)

    def register_builtins(self) -> None:
        """First start: the runtimes of the built-in backends and a default pool for each.

        Every start: the artefacts of the built-in microVM runtime are those of the
        image on this machine (``nfaas microvm build`` may have rebuilt it).
        """
        with self._store.transaction():
            for ref, backend, description, memory_mb, pool_size in BUILTIN_RUNTIMES:
                artefacts = builtin_artefacts(backend)
                existing = self._store.get_runtime(ref.name, ref.version)
                if existing is not None:
                    if existing.builtin and existing.artefacts != artefacts:
                        self._store.upsert_runtime(
                            dataclasses.replace(existing, artefacts=artefacts)
                        )
                    continue
                self._store.upsert_runtime(
                    RuntimeRecord(
                        ref.name,
                        ref.version,
                        backend,
                        description,
                        True,
                        memory_mb,
                        time.time(),
                        artefacts,
                    )
                )
                if pool_size is not None:
                    pool_id = default_pool_id(ref.name, ref.version)
                    self._store.upsert_pool(PoolRecord(pool_id, ref.name, ref.version, pool_size))

    def create(
        self,
        name: str,
        version: str,
        backend: str,
        description: str = "",
        sandbox_memory_mb: int = 16,
    ) -> RuntimeRecord:
        if not re.match(NAME_PATTERN, name) or not re.match(VERSION_PATTERN, version):
            raise InvalidRequest(f"runtime name {name!r} or version {version!r} is not valid")
        if backend not in self._backends:
            raise InvalidRequest(
                f"unknown sandbox backend {backend!r} (known: {', '.join(sorted(self._backends))})"
            )
        if self._store.get_runtime(name, version) is not None:
            raise Conflict(f"runtime {name}:{version} already exists")
        record = RuntimeRecord(
            name, version, backend, description, False, sandbox_memory_mb, time.time()
        )
        self._store.upsert_runtime(record)
        return record

    def get(self, name: str, version: str) -> RuntimeRecord:
        record = self._store.get_runtime(name, version)
        if record is None:
            raise NotFound(f"no runtime {name}:{version} in the runtime repository")
        return record

    def resolve(self, ref: RuntimeRef, *, where: str) -> RuntimeRecord:
        """The runtime a descriptor names, or UnknownRuntime saying which and what exists."""
        record = self._store.get_runtime(ref.name, ref.version)
        if record is None:
            known = ", ".join(r.ref for r in self._store.list_runtimes()) or "none"
            raise UnknownRuntime(
                f"{where}: runtime {ref.name}:{ref.version} is not in the runtime repository "
                f"(available: {known})"
            )
        return record

    def query(self, name: str | None = None) -> list[RuntimeRecord]:
        return self._store.list_runtimes(name)

    def update(self, name: str, version: str, *, description: str | None = None,
               sandbox_memory_mb: int | None = None) -> RuntimeRecord:  # fmt: skip
        record = self.get(name, version)
        changed = dataclasses.replace(
            record,
            description=record.description if description is None else description,
            sandbox_memory_mb=(
                record.sandbox_memory_mb if sandbox_memory_mb is None else sandbox_memory_mb
            ),
        )
        self._store.upsert_runtime(changed)
        return changed

    def pools_of(self, name: str, version: str) -> list[str]:
        """The ids of the pools prepared for a runtime."""
        self.get(name, version)
        return [
            p.id
            for p in self._store.list_pools()
            if (p.runtime_name, p.runtime_version) == (name, version)
        ]

    def delete(self, name: str, version: str) -> list[str]:
        """Delete a runtime no stored function version uses, with its pools' records.

        Returns the ids of the deleted pools: their running ``RuntimePool``s hold
        prepared sandboxes and reserved memory, and are the platform's to close.
        """
        self.get(name, version)
        users = [
            f"{f.app}/{f.name}@{f.version}"
            for f in self._store.list_functions()
            if f.descriptor["runtime"] == {"name": name, "version": version}
        ]
        if users:
            raise Conflict(f"runtime {name}:{version} is used by {', '.join(users[:5])}")
        pools = self.pools_of(name, version)
        with self._store.transaction():
            for pool_id in pools:
                self._store.delete_pool(pool_id)
            self._store.delete_runtime(name, version)
        return pools
