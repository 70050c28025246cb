"""Shared makers for package tests: small valid packages, and zips built by hand."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Mapping

from nfaas.packages.manifest import Algorithm, digest

APP_YAML = """\
descriptor_version: "1.0"
kind: ServerlessApplication
name: demo
version: 1.2.0
provider: Example Provider
runtimes:
  - {name: python, version: "3.11"}
functions:
  - name: hello
    descriptor: Definitions/hello.yaml
  - name: tick
    descriptor: Definitions/tick.yaml
"""

HELLO_YAML = """\
descriptor_version: "1.0"
kind: ServerlessFunction
name: hello
version: 1.0.0
application: demo
runtime: {name: python, version: "3.11"}
handler: hello:handle
code: {path: Files/hello}
scaling: {instance_threshold: 4, concurrency: 1, idle_period_s: 60, max_quick_start: 2}
triggers:
  - type: http
    path: /hello
    methods: [POST]
  - type: udp
    port: 9001
"""

TICK_YAML = """\
kind: ServerlessFunction
name: tick
version: 0.1.0
runtime: {name: python, version: "3.11"}
handler: tick:handle
code: {path: Files/tick.py}
triggers:
  - {type: timer, interval_s: 30}
"""


def app_files(overrides: Mapping[str, str | bytes | None] | None = None) -> dict[str, bytes]:
    """The files of a valid two-function application; ``{path: None}`` removes one."""
    files: dict[str, bytes] = {
        "Definitions/demo.yaml": APP_YAML.encode(),
        "Definitions/hello.yaml": HELLO_YAML.encode(),
        "Definitions/tick.yaml": TICK_YAML.encode(),
        "Files/hello/hello.py": b"def handle(event, context):\n    return 'hello'\n",
        "Files/hello/lib/util.py": b"X = 1\n",
        "Files/tick.py": b"def handle(event, context):\n    return None\n",
    }
    for path, value in (overrides or {}).items():
        if value is None:
            files.pop(path, None)
        else:
            files[path] = value.encode() if isinstance(value, str) else value
    return files


def tosca_meta(entry: str = "Definitions/demo.yaml", manifest: str = "demo.mf") -> bytes:
    return (
        "TOSCA-Meta-File-Version: 1.0\n"
        "CSAR-Version: 1.1\n"
        "Created-By: tests\n"
        f"Entry-Definitions: {entry}\n"
        f"ETSI-Entry-Manifest: {manifest}\n"
    ).encode()


def manifest_text(
    files: Mapping[str, bytes],
    *,
    algorithm: str = "SHA-256",
    metadata: Mapping[str, str] | None = None,
) -> bytes:
    """A manifest listing ``files``; ``algorithm`` is written as given (any spelling)."""
    canonical: Algorithm = "SHA-512" if "512" in algorithm else "SHA-256"
    meta = {"application_name": "demo", "application_version": "1.2.0"}
    if metadata is not None:
        meta = dict(metadata)
    lines = ["metadata:", *(f"  {k}: {v}" for k, v in meta.items())]
    for path in sorted(files):
        lines += ["", f"Source: {path}", f"Algorithm: {algorithm}"]
        lines.append(f"Hash: {digest(files[path], canonical)}")
    return ("\n".join(lines) + "\n").encode()


def package(
    files: Mapping[str, bytes] | None = None,
    *,
    entry: str = "Definitions/demo.yaml",
    manifest: str = "demo.mf",
    algorithm: str = "SHA-256",
    metadata: Mapping[str, str] | None = None,
    listed: Mapping[str, bytes] | None = None,
    extra: Mapping[str, bytes] | None = None,
) -> bytes:
    """A package zip of ``files`` with TOSCA.meta and a manifest.

    ``listed`` replaces what the manifest lists (to make a listed file go
    missing or change a hash); ``extra`` adds files the manifest does not list.
    """
    contents = dict(app_files() if files is None else files)
    contents["TOSCA-Metadata/TOSCA.meta"] = tosca_meta(entry, manifest)
    to_list = dict(contents if listed is None else listed)
    if listed is not None:
        to_list.setdefault("TOSCA-Metadata/TOSCA.meta", contents["TOSCA-Metadata/TOSCA.meta"])
    contents[manifest] = manifest_text(to_list, algorithm=algorithm, metadata=metadata)
    contents.update(extra or {})
    return zip_bytes(sorted(contents.items()))


def zip_bytes(
    entries: Iterable[tuple[str | zipfile.ZipInfo, bytes]],
    compression: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    """A zip written with zipfile directly, entries as given (ZipInfo for odd headers)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def entry_info(
    name: str, mode: int | None = None, compression: int = zipfile.ZIP_DEFLATED
) -> zipfile.ZipInfo:
    """A ZipInfo with a Unix ``mode`` (file type bits included) in its external attributes."""
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.compress_type = compression
    info.create_system = 3
    if mode is not None:
        info.external_attr = mode << 16
    return info
