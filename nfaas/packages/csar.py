"""Reading a whole package: archive, manifest, descriptors, and their cross-checks.

An application package (EVE025 use case #1) has a ServerlessApplication
descriptor as its entry definitions and one ServerlessFunction descriptor per
function it references (7.2.4, Fig. 7.2.4.2-2). A function package (use case
#2) has a single ServerlessFunction descriptor as its entry, naming the
application it updates. ``read_package`` returns a package's contents only
when everything onboarding checks in step 1 of 5.2.6 / 5.3.6 holds.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from nfaas.errors import ManifestError, NotFound, PackageError
from nfaas.packages.archive import DEFAULT_LIMITS, ArchiveLimits, read_archive
from nfaas.packages.definitions import descriptor_kind, field_error, load_yaml, validate
from nfaas.packages.descriptors import ApplicationDescriptor, FunctionDescriptor
from nfaas.packages.manifest import (
    TOSCA_META_PATH,
    Manifest,
    ToscaMeta,
    parse_manifest,
    parse_tosca_meta,
    verify_manifest,
)

PackageKind = Literal["application", "function"]


@dataclass(frozen=True, slots=True)
class PackageContents:
    """A package that passed every onboarding check."""

    kind: PackageKind
    meta: ToscaMeta
    manifest: Manifest
    #: the application descriptor; None in a function package
    application: ApplicationDescriptor | None
    functions: list[FunctionDescriptor]
    #: function name -> path of its descriptor in the package
    function_files: dict[str, str]
    #: every regular file of the archive, by path
    files: dict[str, bytes]
    #: SHA-256 of the archive's bytes, hex
    sha256: str

    @property
    def app_name(self) -> str:
        """The application this package creates or updates."""
        if self.application is not None:
            return self.application.name
        owner = self.functions[0].application
        assert owner is not None  # read_package refuses a function package without it
        return owner

    @property
    def name(self) -> str:
        """The application's name, or the function's in a function package."""
        return self.application.name if self.application else self.functions[0].name

    @property
    def version(self) -> str:
        return self.application.version if self.application else self.functions[0].version

    def function(self, name: str) -> FunctionDescriptor:
        for descriptor in self.functions:
            if descriptor.name == name:
                return descriptor
        raise NotFound(f"package {self.name} has no function {name!r}")

    def code_files(self, fn_name: str) -> dict[str, bytes]:
        """The function's code files, by path relative to its ``code.path``.

        A single-file ``code.path`` gives ``{basename: bytes}``.
        """
        descriptor = self.function(fn_name)
        if descriptor.code.path is None:
            raise PackageError(
                f"function {fn_name!r} has its code at {descriptor.code.url}; fetch it with fetch_code"
            )
        path = descriptor.code.path.rstrip("/")
        if path in self.files:
            return {posixpath.basename(path): self.files[path]}
        prefix = path + "/"
        return {
            name.removeprefix(prefix): data
            for name, data in sorted(self.files.items())
            if name.startswith(prefix)
        }


def read_package(data: bytes, limits: ArchiveLimits = DEFAULT_LIMITS) -> PackageContents:
    """Open and check a package: archive safety, manifest integrity, descriptors, references.

    Raises a ``PackageError`` subclass naming what is wrong: ``UnsafeArchive``,
    ``ManifestError``, ``IntegrityError`` or ``DescriptorError``.
    """
    files = read_archive(data, limits)
    meta = _read_meta(files)
    manifest = parse_manifest(files[meta.entry_manifest], meta.entry_manifest)
    # integrity first: nothing below should act on bytes the provider did not sign off
    verify_manifest(manifest, files)
    entry = meta.entry_definitions
    document = load_yaml(files[entry], entry)
    application: ApplicationDescriptor | None = None
    if descriptor_kind(document, entry) == "ServerlessApplication":
        application = validate(ApplicationDescriptor, document, entry)
        functions, function_files = _load_functions(application, entry, files)
        expected = {
            "application_name": application.name,
            "application_version": application.version,
            "application_provider": application.provider,
        }
    else:
        function = validate(FunctionDescriptor, document, entry)
        if function.application is None:
            raise field_error(
                entry, "application", "a function package must name the application it updates"
            )
        functions, function_files = [function], {function.name: entry}
        expected = {
            "application_name": function.application,
            "function_name": function.name,
            "function_version": function.version,
        }
    _check_metadata(manifest, expected, entry)
    for function in functions:
        _check_code(function, function_files[function.name], files)
    return PackageContents(
        kind="application" if application else "function",
        meta=meta,
        manifest=manifest,
        application=application,
        functions=functions,
        function_files=function_files,
        files=files,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _read_meta(files: Mapping[str, bytes]) -> ToscaMeta:
    if TOSCA_META_PATH not in files:
        raise ManifestError(f"{TOSCA_META_PATH} is missing: not a SOL004 CSAR package")
    meta = parse_tosca_meta(files[TOSCA_META_PATH])
    for key, path in (
        ("Entry-Definitions", meta.entry_definitions),
        ("ETSI-Entry-Manifest", meta.entry_manifest),
    ):
        if path not in files:
            raise ManifestError(f"{TOSCA_META_PATH}: {key} {path!r} is not in the archive")
    return meta


def _load_functions(
    application: ApplicationDescriptor, entry: str, files: Mapping[str, bytes]
) -> tuple[list[FunctionDescriptor], dict[str, str]]:
    """Every function descriptor the application references, checked against the reference."""
    functions: list[FunctionDescriptor] = []
    function_files: dict[str, str] = {}
    runtimes = set(application.runtimes)
    for index, ref in enumerate(application.functions):
        if ref.descriptor not in files:
            raise field_error(
                entry,
                f"functions.{index}.descriptor",
                f"function {ref.name!r} refers to {ref.descriptor!r}, which is not in the package",
            )
        function = validate(
            FunctionDescriptor, load_yaml(files[ref.descriptor], ref.descriptor), ref.descriptor
        )
        if function.name != ref.name:
            raise field_error(
                ref.descriptor,
                "name",
                f"{entry} references this descriptor as {ref.name!r} but it is named {function.name!r}",
            )
        if function.application not in (None, application.name):
            raise field_error(
                ref.descriptor,
                "application",
                f"{function.application!r} is not this package's application {application.name!r}",
            )
        # 7.2.4: the application descriptor lists the runtime software its functions rely on
        if runtimes and function.runtime not in runtimes:
            listed = ", ".join(sorted(str(r) for r in runtimes))
            raise field_error(
                ref.descriptor,
                "runtime",
                f"{function.runtime} is not among the runtimes {entry} lists ({listed})",
            )
        functions.append(function)
        function_files[function.name] = ref.descriptor
    return functions, function_files


def _check_metadata(manifest: Manifest, expected: Mapping[str, str], entry: str) -> None:
    for key, value in expected.items():
        given = manifest.metadata.get(key)
        if given is not None and given != value:
            raise ManifestError(
                f"{manifest.path}: metadata {key} is {given!r} but {entry} says {value!r}"
            )


def _check_code(function: FunctionDescriptor, file: str, files: Mapping[str, bytes]) -> None:
    """The code path and the Wasm preopens point at files the package holds."""
    if function.code.path is not None and not _holds(files, function.code.path):
        raise field_error(
            file,
            "code.path",
            f"{function.code.path!r} is neither a file nor a folder with files in the package",
        )
    if function.wasm is not None:
        for guest, folder in function.wasm.wasi.preopens.items():
            if not _holds(files, folder, folder_only=True):
                raise field_error(
                    file,
                    f"wasm.wasi.preopens.{guest}",
                    f"{folder!r} is not a folder with files in the package",
                )


def _holds(files: Mapping[str, bytes], path: str, *, folder_only: bool = False) -> bool:
    path = path.rstrip("/")
    if not path or path == ".":
        return False
    if not folder_only and path in files:
        return True
    prefix = path + "/"
    return any(name.startswith(prefix) for name in files)
