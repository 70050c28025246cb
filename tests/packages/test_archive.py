from __future__ import annotations

import stat
import struct
import zipfile

import pytest

from nfaas.errors import PackageError, UnsafeArchive
from nfaas.packages.archive import ArchiveLimits, read_archive
from tests.packages.kit import entry_info, zip_bytes

LIMITS = ArchiveLimits()


def _set_declared_size(data: bytes, size: int) -> bytes:
    """Rewrite the uncompressed size of the (only) entry in both of its headers."""
    patched = bytearray(data)
    local = patched.find(b"PK\x03\x04")
    central = patched.find(b"PK\x01\x02")
    struct.pack_into("<I", patched, local + 22, size)
    struct.pack_into("<I", patched, central + 24, size)
    return bytes(patched)


def test_reads_regular_files_and_ignores_directories() -> None:
    data = zip_bytes([("Files/", b""), ("Files/a.txt", b"alpha"), ("b.bin", b"\x00\x01")])
    assert read_archive(data, LIMITS) == {"Files/a.txt": b"alpha", "b.bin": b"\x00\x01"}


def test_reads_a_zip_made_without_unix_modes() -> None:
    info = zipfile.ZipInfo("dos.txt")
    info.create_system = 0
    info.external_attr = 0x20  # MS-DOS "archive" attribute, no Unix mode
    assert read_archive(zip_bytes([(info, b"x")]), LIMITS) == {"dos.txt": b"x"}


@pytest.mark.parametrize("data", [b"", b"not a zip at all", b"PK\x03\x04 truncated"])
def test_not_a_zip(data: bytes) -> None:
    with pytest.raises(PackageError, match="not a readable zip") as info:
        read_archive(data, LIMITS)
    assert type(info.value) is PackageError


def test_truncated_zip() -> None:
    data = zip_bytes([("a.txt", b"alpha" * 100)])
    with pytest.raises(PackageError, match="not a readable zip"):
        read_archive(data[: len(data) // 2], LIMITS)


def test_bad_crc_names_the_entry() -> None:
    data = bytearray(zip_bytes([("Files/data.txt", b"hello world")], zipfile.ZIP_STORED))
    at = data.find(b"hello world")
    data[at] ^= 0xFF
    with pytest.raises(PackageError, match=r"'Files/data.txt' is corrupt.*CRC") as info:
        read_archive(bytes(data), LIMITS)
    assert type(info.value) is PackageError


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("/etc/passwd", "absolute"),
        ("C:/Windows/x.dll", "absolute"),
        ("../evil.py", r"'\.\.'"),
        ("Files/../../evil.py", r"'\.\.'"),
        ("Files\\..\\evil.py", "backslash"),
        ("Files/./a.py", "empty or '.'"),
        ("Files//a.py", "empty or '.'"),
    ],
)
def test_unsafe_names(name: str, why: str) -> None:
    with pytest.raises(UnsafeArchive, match=why) as info:
        read_archive(zip_bytes([(name, b"x")]), LIMITS)
    assert repr(name)[1:-1] in info.value.detail


def test_nul_in_name() -> None:
    # zipfile cuts names at NUL when writing, so patch the bytes afterwards
    data = zip_bytes([("Files/a.py#.txt", b"x")]).replace(b"a.py#.txt", b"a.py\x00.txt")
    with pytest.raises(UnsafeArchive, match="NUL") as info:
        read_archive(data, LIMITS)
    assert "Files/a.py" in info.value.detail


@pytest.mark.parametrize("name", ["Files/a\nb.py", "Files/\x1b[31m.py", "Files/\x7f"])
def test_control_characters_in_names(name: str) -> None:
    with pytest.raises(UnsafeArchive, match=r"contains a control character"):
        read_archive(zip_bytes([(name, b"x")]), LIMITS)


def test_symlink_entry() -> None:
    info = entry_info("Files/link", stat.S_IFLNK | 0o777)
    with pytest.raises(UnsafeArchive, match="'Files/link' is a symbolic link"):
        read_archive(zip_bytes([(info, b"/etc/passwd")]), LIMITS)


@pytest.mark.parametrize("kind", [stat.S_IFIFO, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFSOCK])
def test_other_non_regular_entries(kind: int) -> None:
    info = entry_info("Files/dev", kind | 0o644)
    with pytest.raises(UnsafeArchive, match="'Files/dev' is not a regular file"):
        read_archive(zip_bytes([(info, b"")]), LIMITS)


def test_directory_mode_without_trailing_slash() -> None:
    info = entry_info("Files/sneaky", stat.S_IFDIR | 0o755)
    with pytest.raises(UnsafeArchive, match="'Files/sneaky' is marked as a directory"):
        read_archive(zip_bytes([(info, b"")]), LIMITS)


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_duplicate_names() -> None:
    data = zip_bytes([("Files/a.py", b"one"), ("Files/a.py", b"two")])
    with pytest.raises(UnsafeArchive, match=r"'Files/a.py' appears more than once"):
        read_archive(data, LIMITS)


def test_file_inside_a_file() -> None:
    data = zip_bytes([("Files/a", b"file"), ("Files/a/b", b"nested")])
    with pytest.raises(UnsafeArchive, match="'Files/a/b' is inside 'Files/a'"):
        read_archive(data, LIMITS)


def test_too_many_entries() -> None:
    data = zip_bytes([(f"f{i}", b"") for i in range(6)])
    with pytest.raises(UnsafeArchive, match="6 entries, over the limit of 5"):
        read_archive(data, ArchiveLimits(max_entries=5))


def test_total_size_over_limit_names_the_entry() -> None:
    data = zip_bytes([("a", b"1" * 600), ("b", b"2" * 600)], zipfile.ZIP_STORED)
    with pytest.raises(UnsafeArchive, match="entry 'b' takes the declared uncompressed total"):
        read_archive(data, ArchiveLimits(max_total_bytes=1000))


def test_package_over_size_limit() -> None:
    data = zip_bytes([("a", b"x" * 5000)], zipfile.ZIP_STORED)
    with pytest.raises(UnsafeArchive, match="over the limit of 4096"):
        read_archive(data, ArchiveLimits(max_package_bytes=4096))


def test_zip_bomb_by_ratio() -> None:
    data = zip_bytes([("Files/bomb.bin", bytes(4 * 1024 * 1024))])
    with pytest.raises(
        UnsafeArchive, match=r"'Files/bomb.bin' declares a compression ratio of \d+"
    ):
        read_archive(data, LIMITS)


def test_small_compressible_files_are_exempt_from_the_ratio() -> None:
    data = zip_bytes([("Files/zeros.bin", bytes(16 * 1024))])
    assert read_archive(data, LIMITS)["Files/zeros.bin"] == bytes(16 * 1024)


def test_lying_small_size_does_not_inflate_the_bomb() -> None:
    # declared 100 bytes (exempt from the ratio check), really 4 MiB of zeros:
    # reading stops at the declared size and the CRC gives the lie away
    data = _set_declared_size(zip_bytes([("Files/liar.bin", bytes(4 * 1024 * 1024))]), 100)
    with pytest.raises(PackageError, match=r"'Files/liar.bin' is corrupt"):
        read_archive(data, LIMITS)


def test_lying_large_size_is_caught() -> None:
    data = _set_declared_size(zip_bytes([("Files/short.txt", b"abc" * 100)]), 10_000)
    with pytest.raises(PackageError, match=r"'Files/short.txt' is corrupt"):
        read_archive(data, LIMITS)


def test_encrypted_entry() -> None:
    data = bytearray(zip_bytes([("Files/secret.txt", b"x")]))
    central = data.find(b"PK\x01\x02")
    data[central + 8] |= 0x1  # general purpose flag bit 0: encrypted
    with pytest.raises(PackageError, match=r"'Files/secret.txt' is encrypted"):
        read_archive(bytes(data), LIMITS)


def test_unsupported_compression() -> None:
    data = zip_bytes([("Files/a.txt", b"abc" * 10)], zipfile.ZIP_BZIP2)
    with pytest.raises(PackageError, match=r"'Files/a.txt' uses compression method 12"):
        read_archive(data, LIMITS)
