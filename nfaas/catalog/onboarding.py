"""Onboarding of application and function packages (EVE025 use cases #1, #2; SOL005 states).

A package resource goes CREATED -> UPLOADING -> PROCESSING -> ONBOARDED, or
ERROR with the reason kept. Every check runs before anything is stored: the
archive, its manifest and hashes, the descriptors, the runtimes they name,
code downloaded from URLs, trigger bindings, and a backend compile of the code
(Wasm is compiled once here). Function versions are then written in one
transaction, so a refused package leaves nothing half-stored.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from nfaas.catalog.blobs import BlobStore
from nfaas.catalog.store import FunctionRecord, PackageRecord, StateStore
from nfaas.errors import (
    Conflict,
    DuplicatePackage,
    InvalidRequest,
    NfaasError,
    NotFound,
    PackageError,
    PackageInUse,
    SandboxStartError,
)
from nfaas.packages.archive import ArchiveLimits
from nfaas.packages.csar import PackageContents, read_package
from nfaas.packages.descriptors import FunctionDescriptor
from nfaas.packages.fetch import fetch_code
from nfaas.runtimes.repository import RuntimeRepository
from nfaas.sandboxes.base import FunctionCode, Limits, SandboxBackend

log = logging.getLogger(__name__)

#: checks an application's new trigger bindings against every other application's
BindingCheck = Callable[[str, list[FunctionDescriptor]], None]


class Onboarding:
    def __init__(
        self,
        store: StateStore,
        blobs: BlobStore,
        runtimes: RuntimeRepository,
        backend_for: Callable[[str], Awaitable[SandboxBackend]],
        check_bindings: BindingCheck,
        on_change: Callable[[], Awaitable[None]],
        *,
        compiled_root: Path,
        limits: ArchiveLimits | None = None,
        allow_code_urls: bool = True,
        max_code_bytes: int = 64 << 20,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._runtimes = runtimes
        self._backend_for = backend_for
        self._check_bindings = check_bindings
        self._on_change = on_change
        self._compiled_root = compiled_root
        self._limits = limits or ArchiveLimits()
        self._allow_urls = allow_code_urls
        self._max_code = max_code_bytes

    # -- the SOL005 resource -------------------------------------------------------------

    def create(self, tenant: str) -> PackageRecord:
        now = time.time()
        record = PackageRecord(
            id=str(uuid.uuid4()),
            tenant=tenant,
            onboarding_state="CREATED",
            operational_state="DISABLED",
            created_at=now,
            updated_at=now,
        )
        self._store.insert_package(record)
        return record

    def get(self, package_id: str, tenant: str | None) -> PackageRecord:
        """The package, if ``tenant`` may see it (None: the operator, who sees all)."""
        record = self._store.get_package(package_id)
        if record is None or (tenant is not None and record.tenant != tenant):
            raise NotFound(f"no package {package_id}")
        return record

    async def upload(
        self, package_id: str, data: bytes, tenant: str | None, *, expect: str | None = None
    ) -> PackageRecord:
        """Onboard the content of a CREATED package; ONBOARDED or ERROR with the reason."""
        record = self.get(package_id, tenant)
        if record.onboarding_state != "CREATED":
            raise Conflict(
                f"package {package_id} is {record.onboarding_state}; content can only be "
                "uploaded to a CREATED package"
            )
        self._store.update_package(package_id, onboarding_state="UPLOADING")
        self._store.update_package(package_id, onboarding_state="PROCESSING")
        try:
            contents = read_package(data, self._limits)
            if expect is not None and contents.kind != expect:
                raise PackageError(f"expected a {expect} package, got a {contents.kind} package")
            functions = await self._check_and_store(record, contents, data)
        except NfaasError as exc:
            self._store.update_package(package_id, onboarding_state="ERROR", error=exc.detail)
            log.warning("package %s refused: %s", package_id, exc.detail)
            raise
        except Exception as exc:
            self._store.update_package(package_id, onboarding_state="ERROR", error=repr(exc))
            raise
        log.info(
            "onboarded %s package %s %s (%s)",
            contents.kind,
            contents.app_name,
            contents.version,
            ", ".join(f"{f.name}@{f.version}" for f in functions),
        )
        await self._on_change()
        return self.get(package_id, None)

    async def onboard(
        self, data: bytes, tenant: str, *, expect: str | None = None
    ) -> PackageRecord:
        """Create and upload in one step; a refused package leaves no resource behind."""
        record = self.create(tenant)
        try:
            return await self.upload(record.id, data, tenant, expect=expect)
        except BaseException:
            self._store.delete_package(record.id)
            raise

    def set_operational_state(
        self, package_id: str, state: str, tenant: str | None
    ) -> PackageRecord:
        record = self.get(package_id, tenant)
        if state not in ("ENABLED", "DISABLED"):
            raise InvalidRequest("operationalState must be ENABLED or DISABLED")
        if record.onboarding_state != "ONBOARDED":
            raise Conflict(f"package {package_id} is {record.onboarding_state}, not ONBOARDED")
        return self._store.update_package(package_id, operational_state=state)

    async def delete(self, package_id: str, tenant: str | None) -> None:
        """Delete a package; refused while it is ENABLED (IN_USE) -- disable it first."""
        record = self.get(package_id, tenant)
        if usage_state(record) == "IN_USE":
            raise PackageInUse(
                f"package {package_id} ({record.app} {record.version}) is enabled and serving "
                "events; disable it first"
            )
        with self._store.transaction():
            self._store.delete_functions_of_package(package_id)
            self._store.delete_package(package_id)
            if record.app is not None:
                self._reset_current(record.app)
        await self._on_change()

    # -- the checks ------------------------------------------------------------------------

    async def _check_and_store(
        self, record: PackageRecord, pkg: PackageContents, data: bytes
    ) -> list[FunctionDescriptor]:
        app = pkg.app_name
        owners = {p.tenant for p in self._store.find_onboarded_app(app)}
        if owners and owners != {record.tenant}:
            raise Conflict(f"application name {app!r} is taken by another provider")
        if pkg.kind == "application":
            for existing in self._store.find_onboarded_app(app):
                if existing.kind == "application" and existing.version == pkg.version:
                    raise DuplicatePackage(
                        f"application {app} version {pkg.version} is already onboarded "
                        f"(package {existing.id})"
                    )
        elif not owners:
            raise NotFound(f"function package for {app!r}, but no application {app!r} is onboarded")
        for fn in pkg.functions:
            where = pkg.function_files.get(fn.name, fn.name)
            self._runtimes.resolve(fn.runtime, where=where)
        self._check_bindings(app, pkg.functions)

        staged: list[tuple[FunctionDescriptor, str, Path | None]] = []
        for fn in pkg.functions:
            stored = self._store.get_function(app, fn.name, fn.version)
            tree = self._blobs.put_tree(await self._code(pkg, fn))
            if stored is not None:
                if stored.code_tree != tree or stored.descriptor != fn.model_dump(mode="json"):
                    raise Conflict(
                        f"function {app}/{fn.name} version {fn.version} already exists with other "
                        "code or descriptor; give the new one a new version"
                    )
                continue
            compiled = await self._compile(app, fn, tree)
            staged.append((fn, tree, compiled))

        # The archive itself is kept (content-addressed by pkg.sha256) for package_content.
        self._blobs.put(data)
        now = time.time()
        with self._store.transaction():
            for fn, tree, compiled in staged:
                self._store.insert_function(
                    FunctionRecord(
                        app=app,
                        name=fn.name,
                        version=fn.version,
                        tenant=record.tenant,
                        package_id=record.id,
                        descriptor=fn.model_dump(mode="json"),
                        code_tree=tree,
                        compiled=str(compiled) if compiled else None,
                        created_at=now,
                    )
                )
            # EVE025 7.2.5: new events go to the newly onboarded versions.
            for fn in pkg.functions:
                self._store.set_current(app, fn.name, fn.version)
            self._store.update_package(
                record.id,
                kind=pkg.kind,
                app=app,
                version=pkg.version,
                sha256=pkg.sha256,
                descriptor=(pkg.application or pkg.functions[0]).model_dump(mode="json"),
                functions=[f.name for f in pkg.functions],
                onboarding_state="ONBOARDED",
                operational_state="ENABLED",
                error=None,
            )
        return pkg.functions

    async def _code(self, pkg: PackageContents, fn: FunctionDescriptor) -> dict[str, bytes]:
        if fn.code.path is not None:
            return pkg.code_files(fn.name)
        assert fn.code.url is not None and fn.code.hash is not None
        if not self._allow_urls:
            raise PackageError(f"function {fn.name}: code URLs are not allowed on this node")
        data = await fetch_code(fn.code.url, fn.code.hash, self._max_code)
        name = fn.code.url.rstrip("/").rsplit("/", 1)[-1] or "code"
        return {name: data}

    async def _compile(self, app: str, fn: FunctionDescriptor, tree: str) -> Path | None:
        runtime = self._runtimes.resolve(fn.runtime, where=fn.name)
        backend = await self._backend_for(runtime.backend)
        files = self._blobs.tree(tree)
        folder = self._blobs.materialise(tree, self._compiled_root / "src" / tree)
        path = folder
        if backend.code_is_file and len(files) == 1:
            path = folder / next(iter(files))
        code = FunctionCode(app, fn.name, fn.version, fn.handler, path, Limits())
        dest = self._compiled_root / tree
        dest.mkdir(parents=True, exist_ok=True)
        try:
            return await backend.compile(code, dest)
        except SandboxStartError as exc:
            raise PackageError(f"function {fn.name}: {exc.detail}") from exc

    def _reset_current(self, app: str) -> None:
        """After a delete, each remaining function's newest stored version is current again."""
        self._store.delete_current(app)
        for fn in self._store.list_functions(app):
            self._store.set_current(app, fn.name, fn.version)


def usage_state(record: PackageRecord) -> str:
    """SOL005 usage state: a package serves events while ONBOARDED and ENABLED."""
    serving = record.onboarding_state == "ONBOARDED" and record.operational_state == "ENABLED"
    return "IN_USE" if serving else "NOT_IN_USE"
