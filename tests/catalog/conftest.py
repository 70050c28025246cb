"""Onboarding, the state store and the catalog wired with stubs, without a platform.

``Catalog`` plays the part ``Platform`` plays in production: it builds
``Onboarding`` the way ``nfaas/platform.py`` does, with a mock backend whose
compile can be slowed down, a binding check that accepts everything and an
``on_change`` that records each call and can be told to fail.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nfaas.catalog.blobs import BlobStore
from nfaas.catalog.functions import FunctionCatalog
from nfaas.catalog.onboarding import Onboarding
from nfaas.catalog.store import PackageRecord, StateStore
from nfaas.packages.descriptors import FunctionDescriptor
from nfaas.runtimes.repository import RuntimeRepository
from nfaas.sandboxes.base import FunctionCode, SandboxBackend
from nfaas.sandboxes.mock import MockBackend
from tests.helpers import function_doc, package


class SlowCompiler(MockBackend):
    """The mock backend with a compile step that takes ``compile_delay`` seconds."""

    def __init__(self) -> None:
        super().__init__({})
        self.compile_delay = 0.0
        self.compiled: list[str] = []
        self.compiling = asyncio.Event()

    async def compile(self, code: FunctionCode, dest: Path) -> Path | None:
        self.compiled.append(f"{code.app}/{code.name}@{code.version}")
        self.compiling.set()
        await asyncio.sleep(self.compile_delay)
        return None


@dataclass
class Catalog:
    tmp: Path
    store: StateStore
    blobs: BlobStore
    runtimes: RuntimeRepository
    backend: SlowCompiler
    onboarding: Onboarding = field(init=False)
    catalog: FunctionCatalog = field(init=False)
    #: how many times on_change ran
    changes: int = 0
    #: raised by the next on_change calls while set
    change_error: BaseException | None = None
    #: on_change waits this long first (to be cancelled in the middle)
    change_delay: float = 0.0
    #: set when on_change starts
    changing: asyncio.Event = field(default_factory=asyncio.Event)
    _dirs: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        async def backend_for(name: str) -> SandboxBackend:
            return self.backend

        def check_bindings(app: str, descriptors: list[FunctionDescriptor]) -> None:
            return None

        async def on_change() -> None:
            self.changes += 1
            self.changing.set()
            if self.change_delay:
                await asyncio.sleep(self.change_delay)
            if self.change_error is not None:
                raise self.change_error

        self.onboarding = Onboarding(
            self.store,
            self.blobs,
            self.runtimes,
            backend_for,
            check_bindings,
            on_change,
            compiled_root=self.tmp / "compiled",
        )
        self.catalog = FunctionCatalog(
            self.store, self.blobs, self.tmp / "functions", lambda backend: False
        )

    def package(
        self,
        app: str,
        functions: list[dict[str, Any]],
        *,
        version: str = "1.0.0",
        code: dict[str, dict[str, str]] | None = None,
        application: bool = True,
    ) -> bytes:
        root = self.tmp / "src" / str(next(self._dirs))
        return package(root, app, functions, version=version, code=code, application=application)

    async def app(
        self,
        app: str,
        names: list[str],
        *,
        tenant: str = "acme",
        version: str = "1.0.0",
        fn_version: str = "1.0.0",
        code: dict[str, dict[str, str]] | None = None,
    ) -> PackageRecord:
        """Onboard an application package whose functions are ``names`` at ``fn_version``."""
        fns = [function_doc(n, app=app, version=fn_version) for n in names]
        data = self.package(app, fns, version=version, code=code)
        return await self.onboarding.onboard(data, tenant, expect="application")

    async def update(
        self,
        app: str,
        name: str,
        fn_version: str,
        *,
        tenant: str = "acme",
        code: dict[str, dict[str, str]] | None = None,
    ) -> PackageRecord:
        """Onboard a function package: ``name`` at ``fn_version`` (use case #2)."""
        fns = [function_doc(name, app=app, version=fn_version)]
        data = self.package(app, fns, code=code, application=False)
        return await self.onboarding.onboard(data, tenant, expect="function")

    async def remove(self, record: PackageRecord) -> Any:
        """Disable then delete a package, as a user must; what delete returns."""
        self.onboarding.set_operational_state(record.id, "DISABLED", None)
        return await self.onboarding.delete(record.id, None)


def code_of(text: str, *names: str) -> dict[str, dict[str, str]]:
    """The same handler source for each function of ``names``."""
    return {name: {"handler.py": text} for name in names}


@pytest.fixture
async def cat(tmp_path: Path) -> AsyncIterator[Catalog]:
    store = StateStore(tmp_path / "state.db")
    runtimes = RuntimeRepository(store, ["process", "wasm", "mock"])
    runtimes.create("mock", "1", "mock")
    yield Catalog(tmp_path, store, BlobStore(tmp_path / "store"), runtimes, SlowCompiler())
    store.close()
