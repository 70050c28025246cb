"""TOSCA.meta and the package manifest: parsed, verified, written.

Both follow ETSI GS NFV-SOL 004 (the CSAR layout EVE025 7.2.4 asks packages to
use: "manifest file, checksum, etc."). ``TOSCA-Metadata/TOSCA.meta`` names the
entry descriptor and the manifest; the manifest holds a ``metadata:`` block and
one ``Source``/``Algorithm``/``Hash`` block per file, which is how onboarding
checks the integrity of the package (EVE025 5.2.6 and 5.3.6, step 1).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from nfaas.errors import IntegrityError, ManifestError, UnsafeArchive
from nfaas.packages.archive import check_entry_name

TOSCA_META_PATH = "TOSCA-Metadata/TOSCA.meta"

Algorithm = Literal["SHA-256", "SHA-512"]
#: canonical name and hex length of each accepted algorithm (SOL004 4.3.2)
_ALGORITHMS: dict[str, tuple[Algorithm, int]] = {
    "sha256": ("SHA-256", 64),
    "sha512": ("SHA-512", 128),
}
_HASHLIB_NAMES: dict[Algorithm, str] = {"SHA-256": "sha256", "SHA-512": "sha512"}
_KEY_VALUE = re.compile(r"^([A-Za-z0-9_.-]+)\s*:\s*(.*?)\s*$")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_FILE_KEYS = ("Source", "Algorithm", "Hash")


@dataclass(frozen=True, slots=True)
class ToscaMeta:
    """The block-0 keys of ``TOSCA-Metadata/TOSCA.meta`` (SOL004 4.2, 4.3.6)."""

    meta_file_version: str
    csar_version: str
    created_by: str
    #: path of the entry descriptor (application, or function for a function package)
    entry_definitions: str
    #: path of the manifest
    entry_manifest: str
    #: any other keys (ETSI-Entry-Change-Log, ETSI-Entry-Licenses, ...), kept as given
    other: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FileDigest:
    algorithm: Algorithm
    #: lower-case hex digest
    hex: str

    def matches(self, data: bytes) -> bool:
        return digest(data, self.algorithm) == self.hex


@dataclass(frozen=True, slots=True)
class Manifest:
    """A package manifest: metadata, and the digest of every other file."""

    path: str
    metadata: dict[str, str]
    entries: dict[str, FileDigest]


def digest(data: bytes, algorithm: Algorithm) -> str:
    return hashlib.new(_HASHLIB_NAMES[algorithm], data).hexdigest()


def normalise_algorithm(name: str) -> tuple[Algorithm, int] | None:
    """``SHA-256``, ``sha256``, ``Sha-256`` ... -> ("SHA-256", hex length); None if unknown."""
    return _ALGORITHMS.get(name.replace("-", "").replace("_", "").lower())


def _decode(data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not UTF-8 text ({exc})") from exc


def _lines(text: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(text.splitlines(), start=1):
        yield number, line.rstrip()


# --- TOSCA.meta -------------------------------------------------------------------------

_TOSCA_KEYS = {
    "TOSCA-Meta-File-Version": "meta_file_version",
    "CSAR-Version": "csar_version",
    "Created-By": "created_by",
    "Entry-Definitions": "entry_definitions",
    "ETSI-Entry-Manifest": "entry_manifest",
}


def parse_tosca_meta(data: bytes, path: str = TOSCA_META_PATH) -> ToscaMeta:
    """Parse TOSCA.meta; ``ManifestError`` (with the line) on anything malformed."""
    values: dict[str, str] = {}
    for number, line in _lines(_decode(data, path)):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _KEY_VALUE.match(line)
        if match is None:
            raise ManifestError(f"{path} line {number}: expected 'Key: value', got {line!r}")
        key, value = match.groups()
        if key in values:
            raise ManifestError(f"{path} line {number}: key {key!r} given twice")
        if not value:
            raise ManifestError(f"{path} line {number}: key {key!r} has no value")
        values[key] = value
    missing = [key for key in _TOSCA_KEYS if key not in values]
    if missing:
        raise ManifestError(f"{path}: missing required key(s) {', '.join(missing)}")
    if values["TOSCA-Meta-File-Version"] != "1.0":
        raise ManifestError(
            f"{path}: TOSCA-Meta-File-Version {values['TOSCA-Meta-File-Version']!r} "
            "is not supported (expected 1.0)"
        )
    for key in ("Entry-Definitions", "ETSI-Entry-Manifest"):
        try:
            check_entry_name(values[key])
        except UnsafeArchive as exc:
            raise ManifestError(f"{path}: {key} is not a valid package path: {exc}") from exc
    known = {attr: values.pop(key) for key, attr in _TOSCA_KEYS.items()}
    return ToscaMeta(**known, other=values)


def render_tosca_meta(meta: ToscaMeta) -> bytes:
    lines = [f"{key}: {getattr(meta, attr)}" for key, attr in _TOSCA_KEYS.items()]
    lines += [f"{key}: {value}" for key, value in meta.other.items()]
    return ("\n".join(lines) + "\n").encode()


# --- the manifest -----------------------------------------------------------------------


class _ManifestParser:
    """Line-by-line reader of the SOL004 4.3.2 manifest format."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.metadata: dict[str, str] = {}
        self.entries: dict[str, FileDigest] = {}
        self._block: dict[str, tuple[int, str]] = {}

    def error(self, number: int, message: str) -> ManifestError:
        return ManifestError(f"{self.path} line {number}: {message}")

    def parse(self, text: str) -> Manifest:
        state: Literal["start", "metadata", "files"] = "start"
        for number, line in _lines(text):
            stripped = line.strip()
            if stripped.startswith("-----BEGIN"):
                raise self.error(number, "manifest signatures (CMS) are not supported yet")
            if not stripped:
                # a blank line ends the metadata block and any file block
                state = "files" if state == "metadata" else state
                self._close_block()
                continue
            if stripped.startswith("#"):
                continue
            if state == "start":
                if stripped != "metadata:":
                    raise self.error(number, "the manifest must start with a 'metadata:' block")
                state = "metadata"
                continue
            match = _KEY_VALUE.match(stripped)
            if match is None:
                raise self.error(number, f"expected 'Key: value', got {stripped!r}")
            key, value = match.groups()
            if state == "metadata" and key not in _FILE_KEYS:
                if key in self.metadata:
                    raise self.error(number, f"metadata key {key!r} given twice")
                self.metadata[key] = value
                continue
            state = "files"
            self._file_line(number, key, value)
        self._close_block()
        if state == "start":
            raise ManifestError(f"{self.path}: the manifest is empty")
        return Manifest(path=self.path, metadata=self.metadata, entries=self.entries)

    def _file_line(self, number: int, key: str, value: str) -> None:
        if key not in _FILE_KEYS:
            raise self.error(
                number, f"unknown key {key!r} (a file block has Source, Algorithm and Hash)"
            )
        if key == "Source" and "Source" in self._block:
            self._close_block()
        if key in self._block:
            raise self.error(number, f"{key!r} given twice in one file block")
        if not value:
            raise self.error(number, f"{key!r} has no value")
        self._block[key] = (number, value)

    def _close_block(self) -> None:
        if not self._block:
            return
        block, self._block = self._block, {}
        first = min(number for number, _ in block.values())
        missing = [key for key in _FILE_KEYS if key not in block]
        if missing:
            raise self.error(first, f"file block lacks {', '.join(missing)}")
        source_line, source = block["Source"]
        try:
            check_entry_name(source)
        except UnsafeArchive as exc:
            raise self.error(source_line, f"invalid Source path: {exc}") from exc
        if source.endswith("/"):
            raise self.error(source_line, f"Source {source!r} is a folder; list files")
        if source in self.entries:
            raise self.error(source_line, f"Source {source!r} is listed twice")
        algo_line, algo_name = block["Algorithm"]
        algorithm = normalise_algorithm(algo_name)
        if algorithm is None:
            raise self.error(
                algo_line,
                f"unknown hash algorithm {algo_name!r} for {source!r} (use SHA-256 or SHA-512)",
            )
        hash_line, hex_value = block["Hash"]
        canonical, length = algorithm
        if not _HEX.match(hex_value) or len(hex_value) != length:
            raise self.error(
                hash_line, f"Hash of {source!r} is not a {canonical} hex digest ({length} digits)"
            )
        self.entries[source] = FileDigest(canonical, hex_value.lower())


def parse_manifest(data: bytes, path: str) -> Manifest:
    """Parse a manifest; ``ManifestError`` (with the line) on anything malformed."""
    return _ManifestParser(path).parse(_decode(data, path))


def render_manifest(
    metadata: Mapping[str, str], files: Mapping[str, bytes], algorithm: Algorithm = "SHA-256"
) -> bytes:
    """A manifest listing ``files`` (sorted) with their digests."""
    lines = ["metadata:"]
    lines += [f"  {key}: {value}" for key, value in metadata.items()]
    for path in sorted(files):
        lines += ["", f"Source: {path}", f"Algorithm: {algorithm}"]
        lines.append(f"Hash: {digest(files[path], algorithm)}")
    return ("\n".join(lines) + "\n").encode()


def verify_manifest(manifest: Manifest, files: Mapping[str, bytes]) -> None:
    """Every file but the manifest listed, every listed file present, every hash right.

    ``ManifestError`` for unlisted or missing files, ``IntegrityError`` for a
    digest that does not match (naming the file, algorithm, expected, actual).
    """
    if manifest.path in manifest.entries:
        raise ManifestError(f"{manifest.path}: the manifest cannot list itself")
    unlisted = sorted(set(files) - set(manifest.entries) - {manifest.path})
    if unlisted:
        raise ManifestError(
            f"{manifest.path}: file(s) in the archive but not listed in the manifest: "
            + _listing(unlisted)
        )
    missing = sorted(set(manifest.entries) - set(files))
    if missing:
        raise ManifestError(
            f"{manifest.path}: file(s) listed in the manifest but missing from the archive: "
            + _listing(missing)
        )
    for path, expected in manifest.entries.items():
        actual = digest(files[path], expected.algorithm)
        if actual != expected.hex:
            raise IntegrityError(
                f"{path}: {expected.algorithm} digest mismatch: the manifest says "
                f"{expected.hex}, the file has {actual}",
                file=path,
                algorithm=expected.algorithm,
                expected=expected.hex,
                actual=actual,
            )


def _listing(paths: list[str], most: int = 10) -> str:
    """The first ``most`` paths, so a message stays readable for a package of thousands."""
    shown = ", ".join(paths[:most])
    return shown if len(paths) <= most else f"{shown} and {len(paths) - most} more"
