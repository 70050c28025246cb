"""Reading a package's zip archive without trusting it.

A package comes from a tenant, so its zip is hostile until proven otherwise
(EVE025 5.2.6 step 1: the system checks the package before anything uses it).
``read_archive`` returns the regular files as ``{path: bytes}`` only when every
entry is a plain, relative, canonical path to a regular file, and the whole
fits the limits. Sizes declared in the headers are checked first (cheap), then
every entry is read through a bounded reader that counts the bytes actually
inflated, so a header that lies about its size cannot exhaust memory.
"""

from __future__ import annotations

import io
import stat
import zipfile
import zlib
from dataclasses import dataclass

from nfaas.errors import PackageError, UnsafeArchive

MiB = 1024 * 1024

#: Only stored and deflate: zipfile inflates deflate with a bounded
#: ``max_length`` but hands a whole bzip2/lzma chunk to the decompressor, whose
#: output (bzip2 reaches ratios in the millions) is unbounded before truncation.
_SUPPORTED_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
_CHUNK = 64 * 1024
#: MS-DOS directory attribute, set by zip tools that do not write Unix modes
_DOS_DIRECTORY = 0x10


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """Bounds a package archive must stay within."""

    #: size of the zip itself
    max_package_bytes: int = 64 * MiB
    #: entries in the central directory, directories included
    max_entries: int = 10_000
    #: sum of the inflated sizes of all files
    max_total_bytes: int = 256 * MiB
    #: inflated / compressed size of one entry; above it the entry is a zip bomb
    max_ratio: float = 200.0
    #: entries smaller than this are exempt from the ratio check: a few KiB of
    #: repeated bytes compress far beyond any sane ratio yet cannot hurt anyone,
    #: and the total size limit still bounds them
    ratio_exempt_bytes: int = 64 * 1024
    #: length of one entry name, in characters
    max_name_length: int = 1024


DEFAULT_LIMITS = ArchiveLimits()


def read_archive(data: bytes, limits: ArchiveLimits) -> dict[str, bytes]:
    """The regular files of a zip archive, by path, after every safety check.

    Raises ``PackageError`` when ``data`` is not a readable zip (or an entry
    fails its CRC), and ``UnsafeArchive`` when an entry is unsafe or a limit is
    exceeded; the message names the offending entry.
    """
    if len(data) > limits.max_package_bytes:
        raise UnsafeArchive(
            f"package is {len(data)} bytes, over the limit of {limits.max_package_bytes}"
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError) as exc:
        raise PackageError(f"package is not a readable zip archive: {exc}") from exc
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_entries:
            raise UnsafeArchive(
                f"archive has {len(infos)} entries, over the limit of {limits.max_entries}"
            )
        files = _check_entries(infos, limits)
        return {info.filename: _read_entry(archive, info, limits) for info in files}


def check_entry_name(name: str) -> None:
    """Raise ``UnsafeArchive`` unless ``name`` is a canonical relative POSIX path.

    Shared with the manifest, whose ``Source:`` paths obey the same rules.
    """
    if "\x00" in name:
        raise UnsafeArchive(f"entry name {name!r} contains a NUL byte")
    if any(ord(char) < 0x20 or char == "\x7f" for char in name):
        # a newline in a name would also break the line-based manifest
        raise UnsafeArchive(f"entry name {name!r} contains a control character")
    if "\\" in name:
        raise UnsafeArchive(f"entry {name!r}: backslashes are not allowed in names")
    if name.startswith("/") or (len(name) >= 2 and name[1] == ":" and name[0].isalpha()):
        raise UnsafeArchive(f"entry {name!r}: absolute paths are not allowed")
    parts = name.removesuffix("/").split("/")
    if ".." in parts:
        raise UnsafeArchive(f"entry {name!r}: '..' path components are not allowed")
    if any(part in ("", ".") for part in parts):
        # "a//b" and "a/./b" would alias "a/b" once extracted
        raise UnsafeArchive(f"entry {name!r}: empty or '.' path components are not allowed")


def _check_entries(infos: list[zipfile.ZipInfo], limits: ArchiveLimits) -> list[zipfile.ZipInfo]:
    """Validate every header; return the file entries (directories dropped)."""
    seen: set[str] = set()
    files: list[zipfile.ZipInfo] = []
    declared_total = 0
    for info in infos:
        # ZipInfo cuts a name at its first NUL; the untouched name is orig_filename
        name = info.orig_filename
        if len(name) > limits.max_name_length:
            raise UnsafeArchive(
                f"entry {name[:80]!r}... has a name over {limits.max_name_length} characters"
            )
        check_entry_name(name)
        canonical = name.removesuffix("/")
        if canonical in seen:
            raise UnsafeArchive(f"entry {canonical!r} appears more than once")
        seen.add(canonical)
        if _is_directory(info):
            continue
        _check_file_entry(info, limits)
        declared_total += info.file_size
        if declared_total > limits.max_total_bytes:
            raise UnsafeArchive(
                f"entry {name!r} takes the declared uncompressed total over the limit "
                f"of {limits.max_total_bytes} bytes"
            )
        files.append(info)
    # a file "a" and a file "a/b" cannot both exist once extracted
    file_names = {info.filename for info in files}
    for info in files:
        parts = info.filename.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in file_names:
                raise UnsafeArchive(
                    f"entry {info.filename!r} is inside {parent!r}, which is a file"
                )
    return files


def _is_directory(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    marked_dir = stat.S_ISDIR(mode) or bool(info.external_attr & _DOS_DIRECTORY)
    named_dir = info.orig_filename.endswith("/")
    if marked_dir and not named_dir:
        raise UnsafeArchive(
            f"entry {info.orig_filename!r} is marked as a directory but its name lacks a trailing '/'"
        )
    if named_dir and info.file_size > 0:
        raise UnsafeArchive(f"directory entry {info.orig_filename!r} has content")
    return named_dir


def _check_file_entry(info: zipfile.ZipInfo, limits: ArchiveLimits) -> None:
    name = info.orig_filename
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    # zips made on DOS/Windows carry no Unix mode (0): those are regular files
    if kind == stat.S_IFLNK:
        raise UnsafeArchive(f"entry {name!r} is a symbolic link; packages hold regular files only")
    if kind not in (0, stat.S_IFREG):
        raise UnsafeArchive(
            f"entry {name!r} is not a regular file (mode {mode:o}); packages hold regular files only"
        )
    if info.flag_bits & 0x1:
        raise PackageError(f"entry {name!r} is encrypted; encrypted entries are not supported")
    if info.compress_type not in _SUPPORTED_METHODS:
        raise PackageError(
            f"entry {name!r} uses compression method {info.compress_type}; "
            "only stored (0) and deflate (8) are accepted"
        )
    if _ratio_exceeded(info.file_size, info.compress_size, limits):
        raise UnsafeArchive(
            f"entry {name!r} declares a compression ratio of "
            f"{info.file_size / max(info.compress_size, 1):.0f}, over the limit of "
            f"{limits.max_ratio:.0f} (zip bomb?)"
        )


def _ratio_exceeded(inflated: int, compressed: int, limits: ArchiveLimits) -> bool:
    if inflated <= limits.ratio_exempt_bytes:
        return False
    return inflated > limits.max_ratio * max(compressed, 1)


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ArchiveLimits) -> bytes:
    """Inflate one entry, counting real bytes against its declared size and the ratio."""
    name = info.filename
    buffer = bytearray()
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(_CHUNK):
                buffer += chunk
                if len(buffer) > info.file_size:
                    raise UnsafeArchive(f"entry {name!r} inflates past its declared size")
                if _ratio_exceeded(len(buffer), info.compress_size, limits):
                    raise UnsafeArchive(
                        f"entry {name!r} inflates beyond a compression ratio of "
                        f"{limits.max_ratio:.0f} (zip bomb?)"
                    )
    except UnsafeArchive:
        raise
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError, RuntimeError) as exc:
        # zipfile raises BadZipFile for a bad CRC and a mismatched local header
        raise PackageError(f"entry {name!r} is corrupt: {exc}") from exc
    if len(buffer) != info.file_size:
        raise PackageError(
            f"entry {name!r} is corrupt: {len(buffer)} bytes instead of the declared {info.file_size}"
        )
    return bytes(buffer)
