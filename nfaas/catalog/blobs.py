"""A content-addressed store on local disk for function code and packages.

Every file is stored once under its SHA-256 (``blobs/ab/cdef...``); a function
version's code is a *tree*, a small JSON blob mapping relative paths to file
digests, so two versions that share files share storage. Writes go to a
temporary name and are renamed into place, so a crash never leaves a blob
that does not match its name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from nfaas.errors import IntegrityError, NotFound


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs").mkdir(parents=True, exist_ok=True)

    def _path(self, digest: str) -> Path:
        return self.root / "blobs" / digest[:2] / digest[2:]

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return digest

    def get(self, digest: str) -> bytes:
        try:
            data = self._path(digest).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not in the store") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise IntegrityError(f"blob {digest} is corrupt on disk")
        return data

    def has(self, digest: str) -> bool:
        return self._path(digest).exists()

    def put_tree(self, files: dict[str, bytes]) -> str:
        """Store files and the tree naming them; returns the tree's digest."""
        tree = {path: self.put(data) for path, data in sorted(files.items())}
        return self.put(json.dumps(tree, sort_keys=True).encode())

    def tree(self, digest: str) -> dict[str, str]:
        tree: dict[str, str] = json.loads(self.get(digest))
        return tree

    def materialise(self, tree_digest: str, dest: Path) -> Path:
        """Write a tree's files under ``dest`` (once; the folder is named by the tree).

        Modes are set, not left to the umask: the code is readable by everyone and
        writable by its owner only (folders 0755, files 0644), so that a worker
        running as an unprivileged uid can read it and not change it. The folder
        holding ``dest`` is made owner-only (0700): a worker is given ``dest`` alone,
        as an open descriptor, and must not climb out of it with ``..`` to the
        state database or other functions' code.
        """
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.parent.chmod(0o700)
        if dest.exists():
            _make_readable(dest)  # it may have been written before modes were set here
            return dest
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".tmp-"))
        try:
            for rel, digest in self.tree(tree_digest).items():
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(self.get(digest))
            _make_readable(tmp)
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return dest


def _make_readable(root: Path) -> None:
    """Folders 0755 and files 0644 throughout ``root`` (which holds no links: the store
    writes regular files only)."""
    for folder, _, files in os.walk(root):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)
