"""Onboarding of application and function packages (EVE025 use cases #1, #2; SOL005 states).

A package resource goes CREATED -> UPLOADING -> PROCESSING -> ONBOARDED, or
ERROR with the reason kept. Every check runs before anything is stored: the
archive, its manifest and hashes, the descriptors, the runtimes they name,
code downloaded from URLs, trigger bindings, and a backend compile of the code
(Wasm is compiled once here). Function versions and the package's links to
them are then written in one transaction, so a refused package leaves nothing
half-stored.

Onboardings and deletions run one at a time (``_lock``): the checks read the
stored state before awaits (downloads, compiles) and the store writes after, so
two at once could both pass a check only one may pass (two tenants taking one
application name). Onboarding is rare on an edge node; events never wait on it.

When ``on_change`` (the platform's reconcile) fails after a package was stored,
the package is withdrawn -- its links and the versions no other package ships
are deleted and it goes to ERROR with the reason, in one transaction -- and
``on_change`` runs again to put the platform back as it was. A user who sees
an onboarding fail expects nothing of it to serve and to be free to send it
again; a kept package would also make every later reconcile fail the same way.
If the onboarding is cancelled instead (shutdown), the store is withdrawn the
same way and the next reconcile catches up.

A function's current version is the one the newest onboarded of the ONBOARDED
and ENABLED packages ships (``StateStore.current_versions``): an update takes
over, disabling it falls back to the version of the next newest enabled package,
and a function no enabled package ships serves nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from nfaas.catalog.blobs import BlobStore
from nfaas.catalog.store import FunctionRecord, PackageRecord, StateStore, VersionKey
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
from nfaas.packages.fetch import fetch_code, public_destinations_only
from nfaas.runtimes.repository import RuntimeRepository
from nfaas.sandboxes.base import FunctionCode, Limits, SandboxBackend

log = logging.getLogger(__name__)

#: checks an application's new trigger bindings against every other application's
BindingCheck = Callable[[str, list[FunctionDescriptor]], None]

#: the reason kept on packages a restart interrupted
INTERRUPTED = "interrupted by a platform restart"


@dataclass(frozen=True)
class Recovery:
    """What ``Onboarding.recover`` put right at startup."""

    #: packages found UPLOADING or PROCESSING, now ERROR
    interrupted: list[str]
    #: function versions no package shipped any more, now deleted
    removed: list[VersionKey]


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
        allow_private_code_urls: bool = False,
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
        self._url_check = None if allow_private_code_urls else public_destinations_only
        self._max_code = max_code_bytes
        self._lock = asyncio.Lock()
        #: told of every upload that ends ONBOARDED or ERROR (lifecycle notifications)
        self.observers: list[Callable[[PackageRecord], None]] = []

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
            async with self._lock:
                functions = await self._check_and_store(record, contents, data)
                log.info(
                    "onboarded %s package %s %s (%s)",
                    contents.kind,
                    contents.app_name,
                    contents.version,
                    ", ".join(f"{f.name}@{f.version}" for f in functions),
                )
                await self._put_in_service(package_id)
        except BaseException as exc:
            self._refuse(package_id, _reason(exc))
            self._tell(package_id)
            raise
        self._tell(package_id)
        return self.get(package_id, None)

    def _tell(self, package_id: str) -> None:
        record = self._store.get_package(package_id)
        if record is not None:
            for observer in self.observers:
                observer(record)

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
        """ENABLED or DISABLED; the caller reconciles (the current versions may change)."""
        record = self.get(package_id, tenant)
        if state not in ("ENABLED", "DISABLED"):
            raise InvalidRequest("operationalState must be ENABLED or DISABLED")
        if record.onboarding_state != "ONBOARDED":
            raise Conflict(f"package {package_id} is {record.onboarding_state}, not ONBOARDED")
        return self._store.update_package(package_id, operational_state=state)

    async def delete(self, package_id: str, tenant: str | None) -> list[VersionKey]:
        """Delete a package; refused while it is ENABLED -- disable it first.

        Returns the function versions deleted with it: those no other package ships.
        Their deployments are the platform's to retire.
        """
        self._deletable(package_id, tenant)  # at once, rather than after a running onboarding
        async with self._lock:
            record = self._deletable(package_id, tenant)
            deleted = self._store.delete_package(package_id)
            if record.app is not None:
                log.info(
                    "deleted package %s (%s %s); versions deleted: %s",
                    package_id,
                    record.app,
                    record.version,
                    ", ".join(f"{a}/{n}@{v}" for a, n, v in deleted) or "none",
                )
            await self._on_change()
        return deleted

    def _deletable(self, package_id: str, tenant: str | None) -> PackageRecord:
        record = self.get(package_id, tenant)
        if record.onboarding_state in ("UPLOADING", "PROCESSING"):
            raise Conflict(f"package {package_id} is being onboarded; try again when it is done")
        if record.onboarding_state == "ONBOARDED" and record.operational_state == "ENABLED":
            # SOL005: only a DISABLED package is deleted, even one that serves nothing now.
            serving = " and serving events" if record.in_use else ""
            raise PackageInUse(
                f"package {package_id} ({record.app} {record.version}) is enabled{serving}; "
                "disable it first"
            )
        self._refuse_orphaning(record)
        return record

    def recover(self) -> Recovery:
        """Startup: finish what a crash or a kill left half done (call before reconciling).

        Packages caught UPLOADING or PROCESSING go to ERROR, and versions no package
        ships (left by older state files) are deleted.
        """
        interrupted: list[str] = []
        with self._store.transaction():
            for record in self._store.list_packages():
                if record.onboarding_state in ("UPLOADING", "PROCESSING"):
                    self._refuse(record.id, INTERRUPTED)
                    interrupted.append(record.id)
            removed = self._store.delete_unreferenced_functions()
        if interrupted or removed:
            log.warning(
                "recovered: %d package(s) interrupted by a restart, %d unshipped version(s) deleted",
                len(interrupted),
                len(removed),
            )
        return Recovery(interrupted, removed)

    # -- failure ---------------------------------------------------------------------------

    async def _put_in_service(self, package_id: str) -> None:
        """Reconcile after storing; if that fails, withdraw the package and reconcile again."""
        try:
            await self._on_change()
        except BaseException as exc:
            self._refuse(package_id, f"could not be put in service: {_reason(exc)}")
            if isinstance(exc, Exception):
                try:
                    await self._on_change()
                except Exception:
                    log.exception("reconcile after withdrawing package %s failed", package_id)
            raise

    def _refuse(self, package_id: str, reason: str) -> None:
        """ERROR with ``reason``, withdrawing all the package stored, in one transaction.

        Idempotent: a package already in ERROR keeps its first reason.
        """
        record = self._store.get_package(package_id)
        if record is None or record.onboarding_state == "ERROR":
            return
        with self._store.transaction():
            withdrawn = self._store.unlink_package(package_id)
            self._store.update_package(
                package_id, onboarding_state="ERROR", operational_state="DISABLED", error=reason
            )
        log.warning(
            "package %s refused: %s%s",
            package_id,
            reason,
            f" (withdrew {len(withdrawn)} version(s))" if withdrawn else "",
        )

    def _refuse_orphaning(self, record: PackageRecord) -> None:
        """An application's last application package goes after its function packages."""
        if record.kind != "application" or record.onboarding_state != "ONBOARDED":
            return
        others = [p for p in self._store.find_onboarded_app(record.app or "") if p.id != record.id]
        if any(p.kind == "application" for p in others):
            return
        updates = [p.id for p in others if p.kind == "function"]
        if updates:
            raise Conflict(
                f"application {record.app} still has function packages {', '.join(updates)}; "
                "delete them first"
            )

    # -- the checks ------------------------------------------------------------------------

    async def _check_and_store(
        self, record: PackageRecord, pkg: PackageContents, data: bytes
    ) -> list[FunctionDescriptor]:
        app = pkg.app_name
        onboarded = self._store.find_onboarded_app(app)
        owners = {p.tenant for p in onboarded}
        if owners and owners != {record.tenant}:
            raise Conflict(f"application name {app!r} is taken by another provider")
        if pkg.kind == "application":
            for existing in onboarded:
                if existing.kind == "application" and existing.version == pkg.version:
                    raise DuplicatePackage(
                        f"application {app} version {pkg.version} is already onboarded "
                        f"(package {existing.id})"
                    )
        elif not any(p.kind == "application" for p in onboarded):
            raise NotFound(
                f"function package for {app!r}, but no application {app!r} is onboarded "
                "(onboard its application package first)"
            )
        for fn in pkg.functions:
            where = pkg.function_files.get(fn.name, fn.name)
            self._runtimes.resolve(fn.runtime, where=where)
        self._check_bindings(app, pkg.functions)

        staged: list[tuple[FunctionDescriptor, str, Path | None]] = []
        for fn in pkg.functions:
            stored = self._store.get_function(app, fn.name, fn.version)
            tree = self._blobs.put_tree(await self._code(pkg, fn))
            if stored is not None:
                if (
                    stored.code_tree != tree
                    or stored.descriptor != fn.model_dump(mode="json")
                    or stored.tenant != record.tenant
                ):
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
            # The package ships every one of its versions, new or already stored, and
            # its links are the newest: EVE025 7.2.5, new events go to them.
            for fn in pkg.functions:
                self._store.link_function(record.id, app, fn.name, fn.version)
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
        data = await fetch_code(fn.code.url, fn.code.hash, self._max_code, check=self._url_check)
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
        if fn.ebpf is not None:
            # EVE025 6.6.1: the object is built and checked against the descriptor here
            from nfaas.ebpf.onboarding import prepare_object

            return await prepare_object(fn, path, dest)
        try:
            return await backend.compile(code, dest)
        except SandboxStartError as exc:
            raise PackageError(f"function {fn.name}: {exc.detail}") from exc


def usage_state(record: PackageRecord) -> str:
    """SOL005 usage state: IN_USE while the package ships a version that takes events.

    That needs it ONBOARDED and ENABLED, and not superseded for every one of its
    functions by a newer enabled package (``StateStore.current_versions``).
    """
    return "IN_USE" if record.in_use else "NOT_IN_USE"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, NfaasError):
        return exc.detail
    if isinstance(exc, asyncio.CancelledError):
        return "interrupted before onboarding finished"
    return repr(exc)
