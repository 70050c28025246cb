"""Building a package from a source folder, reproducibly.

A source folder holds ``Definitions/*.yaml`` (the descriptors) and ``Files/``
(the code), and may hold other files (licences, docs). The builder adds what a
provider should not write by hand, ``TOSCA-Metadata/TOSCA.meta`` and the
manifest with every file's digest (SOL004; EVE025 7.2.4: "manifest file,
checksum"), and zips the lot deterministically: sorted entries, fixed
timestamps and modes, so the same folder always gives the same bytes (and so
the same package digest). It then reads its own output back with
``read_package``, so a bad source fails here with the error onboarding would give.
"""

from __future__ import annotations

import io
import stat
import zipfile
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from pathlib import Path

from nfaas.errors import PackageError
from nfaas.packages.archive import DEFAULT_LIMITS, ArchiveLimits
from nfaas.packages.csar import PackageContents, read_package
from nfaas.packages.definitions import KINDS, load_yaml, validate
from nfaas.packages.descriptors import ApplicationDescriptor, FunctionDescriptor
from nfaas.packages.manifest import TOSCA_META_PATH, ToscaMeta, render_manifest, render_tosca_meta

DEFINITIONS = "Definitions"
#: the earliest time a zip header can hold; any fixed value would do
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
#: editor, VCS and interpreter litter that never belongs in a package
_SKIPPED_DIRS = {"__pycache__"}
_SKIPPED_SUFFIXES = (".pyc", ".pyo")


def build_package(
    source: Path,
    *,
    release_date_time: str | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> bytes:
    """The package (zip bytes) for the source folder ``source``.

    ``release_date_time`` (ISO 8601) goes into the manifest metadata when
    given; it is not taken from the clock, which would break reproducibility.
    Raises ``PackageError`` (or a subclass, as ``read_package`` does) for a bad source.
    """
    if not source.is_dir():
        raise PackageError(f"package source {source} is not a folder")
    files = collect_files(source)
    entry, descriptor = _entry_descriptor(files)
    manifest_path = f"{descriptor.name}.mf"
    for generated in (TOSCA_META_PATH, manifest_path):
        if generated in files:
            raise PackageError(f"{source / generated} exists; the builder generates it, remove it")
    meta = ToscaMeta(
        meta_file_version="1.0",
        csar_version="1.1",
        created_by=f"nfaas {_nfaas_version()}",
        entry_definitions=entry,
        entry_manifest=manifest_path,
    )
    files[TOSCA_META_PATH] = render_tosca_meta(meta)
    metadata = _metadata(descriptor)
    if release_date_time is not None:
        metadata["release_date_time"] = release_date_time
    files[manifest_path] = render_manifest(metadata, files)
    data = write_zip(files)
    read_package(data, limits)
    return data


def verify_package(data: bytes, limits: ArchiveLimits = DEFAULT_LIMITS) -> PackageContents:
    """Every onboarding check on a package, without storing it (``nfaas package verify``)."""
    return read_package(data, limits)


def collect_files(source: Path) -> dict[str, bytes]:
    """The files of a source folder by POSIX path, minus hidden files and bytecode."""
    files: dict[str, bytes] = {}
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if any(part.startswith(".") or part in _SKIPPED_DIRS for part in relative.parts):
            continue
        if path.is_symlink():
            # a package holds regular files only (read_archive refuses links)
            raise PackageError(f"{path} is a symbolic link; copy the file instead")
        if path.is_dir() or path.suffix in _SKIPPED_SUFFIXES:
            continue
        if not path.is_file():
            raise PackageError(f"{path} is not a regular file")
        name = relative.as_posix()
        try:
            name.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise PackageError(f"{path}: file names must be valid UTF-8") from exc
        files[name] = path.read_bytes()
    return files


def write_zip(files: dict[str, bytes]) -> bytes:
    """A deterministic zip: sorted names, fixed time, mode 0644, deflate level 9."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.create_system = 3  # Unix, so that external_attr holds a mode
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            archive.writestr(info, files[name], zipfile.ZIP_DEFLATED, 9)
    return buffer.getvalue()


def _entry_descriptor(
    files: dict[str, bytes],
) -> tuple[str, ApplicationDescriptor | FunctionDescriptor]:
    """The single application descriptor, else the single function descriptor."""
    found: dict[str, list[str]] = {kind: [] for kind in KINDS}
    for name in sorted(files):
        if name.startswith(DEFINITIONS + "/") and name.endswith((".yaml", ".yml")):
            kind = load_yaml(files[name], name).get("kind")
            if kind in found:
                found[kind].append(name)
    for kind in ("ServerlessApplication", "ServerlessFunction"):
        candidates = found[kind]
        if len(candidates) == 1:
            entry = candidates[0]
            return entry, validate(KINDS[kind], load_yaml(files[entry], entry), entry)
        if len(candidates) > 1:
            raise PackageError(
                f"{len(candidates)} {kind} descriptors ({', '.join(candidates)}) and no single "
                "entry: a package has one application descriptor, or one function descriptor"
            )
    raise PackageError(
        f"no descriptor of kind ServerlessApplication or ServerlessFunction under {DEFINITIONS}/"
    )


def _metadata(descriptor: ApplicationDescriptor | FunctionDescriptor) -> dict[str, str]:
    if isinstance(descriptor, ApplicationDescriptor):
        return {
            "application_name": descriptor.name,
            "application_provider": descriptor.provider,
            "application_version": descriptor.version,
        }
    metadata = {"function_name": descriptor.name, "function_version": descriptor.version}
    if descriptor.application is not None:
        metadata["application_name"] = descriptor.application
    return metadata


def _nfaas_version() -> str:
    try:
        return dist_version("nfaas")
    except PackageNotFoundError:
        return "0+unknown"
