"""Initramfs archives in the ``newc`` cpio format the Linux kernel unpacks at boot.

Written here rather than by the ``cpio`` tool so an archive is reproducible
(entries sorted, owner root, one fixed mtime unless a file's own is asked for) and needs nothing installed.
The kernel unpacks several archives concatenated into one initrd, each one
ending with its ``TRAILER!!!`` entry, which is how the guest agent's layer is
added to a base image without rebuilding it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MAGIC = b"070701"
TRAILER = "TRAILER!!!"
#: the mtime of every entry: 2020-01-01, so archives of the same files are identical
FIXED_MTIME = 1_577_836_800


@dataclass(frozen=True, slots=True)
class Entry:
    """One archive member: its path inside the guest (no leading slash) and content."""

    path: str
    mode: int
    data: bytes = b""
    #: kept for files whose bytecode is checked against their source's mtime
    mtime: int = FIXED_MTIME

    @classmethod
    def directory(cls, path: str, perm: int = 0o755) -> Entry:
        return cls(path, stat.S_IFDIR | perm)

    @classmethod
    def file(cls, path: str, data: bytes, perm: int = 0o644, mtime: int = FIXED_MTIME) -> Entry:
        return cls(path, stat.S_IFREG | perm, data, mtime)

    @classmethod
    def symlink(cls, path: str, target: str) -> Entry:
        return cls(path, stat.S_IFLNK | 0o777, target.encode())


def _header(ino: int, entry: Entry, name: bytes) -> bytes:
    fields = (ino, entry.mode, 0, 0, 1, entry.mtime, len(entry.data), 0, 0, 0, 0, len(name), 0)
    return MAGIC + b"".join(b"%08X" % value for value in fields)


def _pad(size: int) -> bytes:
    return b"\0" * (-size % 4)


def write_archive(out: BinaryIO, entries: Iterable[Entry]) -> None:
    """Write ``entries`` (parents before children) and the trailer to ``out``."""
    ino = 0
    for entry in [*entries, Entry(TRAILER, 0)]:
        ino += 1
        name = entry.path.encode() + b"\0"
        header = _header(ino if entry.path != TRAILER else 0, entry, name)
        out.write(header + name + _pad(len(header) + len(name)))
        out.write(entry.data + _pad(len(entry.data)))


def tree_entries(root: Path, prefix: str = "") -> Iterator[Entry]:
    """Every folder, regular file and symlink under ``root``, sorted, as guest paths.

    Modes are kept (executables stay executable); other file types are left out.
    """
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        base = Path(folder)
        relative = base.relative_to(root).as_posix()
        guest = "/".join(p for p in (prefix, "" if relative == "." else relative) if p)
        if guest:
            yield Entry.directory(guest, stat.S_IMODE(base.stat().st_mode))
        for name in sorted(files + [d for d in dirs if (base / d).is_symlink()]):
            path = base / name
            info = path.lstat()
            member = f"{guest}/{name}" if guest else name
            if stat.S_ISLNK(info.st_mode):
                yield Entry.symlink(member, os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                yield Entry.file(member, path.read_bytes(), stat.S_IMODE(info.st_mode))
