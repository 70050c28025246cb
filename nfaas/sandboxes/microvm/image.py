"""The microVM guest image, built from the distribution's packages (key issue #7.2).

``nfaas microvm build`` (and ``scripts/setup``) runs ``build_image``: it
downloads the packages with ``apt-get download`` and unpacks them with
``dpkg -x`` (nothing is installed on the host), then writes three artefacts,
kept apart as key issue #7.2 asks:

- ``vmlinux``: the kernel of ``linux-image-cloud-amd64``, taken out of its
  compressed ``vmlinuz`` (QEMU boots the uncompressed ELF through its PVH entry,
  which skips the decompressor: faster under software emulation);
- ``rootfs.cpio``: an initramfs with busybox, CPython 3.11 and its standard
  library (compiled to bytecode, tests and GUI parts left out), the shared
  libraries they need, the virtio modules and ``/init``;
- ``cmdline``: the kernel's boot parameters;

and ``manifest.json`` with the package versions and each artefact's SHA-256.
The guest agent and its Python dependencies are not in the image: the backend
appends them as a second archive at boot (``agent_layer``), so an nfaas
upgrade needs no rebuild. A build that finds a manifest of the same packages
leaves the image as it is.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import py_compile
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from nfaas.errors import BackendUnavailable, SandboxStartError
from nfaas.sandboxes.microvm.cpio import FIXED_MTIME, Entry, tree_entries, write_archive

KERNEL_PACKAGE = "linux-image-cloud-amd64"
#: the user space of the guest; their dependencies the guest does not use are left out
USER_PACKAGES = (
    "busybox-static",
    "libc6",
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "zlib1g",
    "libexpat1",
    "libffi8",
    "libbz2-1.0",
    "liblzma5",
    "libuuid1",
    "libssl3",
    "libstdc++6",  # numpy's C extensions
    "libgcc-s1",
)
#: kernel modules the guest loads, in order: virtio-mmio devices and the serial port
MODULES = (
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_mmio.ko",
    "drivers/char/virtio_console.ko",
)
#: busybox applets /init uses (linked at build time, so the guest does not install them)
APPLETS = ("sh", "mount", "insmod", "mkdir", "echo", "cat", "poweroff", "reboot", "sleep", "ls")
#: standard library parts no function needs inside a sandbox
STDLIB_LEFT_OUT = (
    "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data",
    "unittest/test", "distutils/tests", "ctypes/test", "sqlite3/test", "venv",
    "config-3.11-x86_64-linux-gnu", "site-packages", "dist-packages",
)  # fmt: skip
PYTHON = "python3.11"
#: the guest's boot parameters; ``tsc_early_khz`` is added at boot from the host's clock
BOOT_PARAMETERS = (
    "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init pci=off "
    "nomodeset noapic_timer_check no_timer_check i8042.noaux i8042.nokbd "
    "cryptomgr.notests random.trust_cpu=on mitigations=off"
)
IMAGE_FORMAT = 3

INIT_SCRIPT = """#!/bin/sh
# nfaas microVM guest init: mount, load the virtio modules, run the agent,
# report how it ended on the console, power off.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=1777,size=64m tmpfs /tmp
for module in /lib/modules/nfaas/*.ko; do insmod "$module"; done
cd /opt/nfaas
/usr/bin/python3.11 -E -s -S -B -m nfaas.sandboxes.microvm.agent /dev/vport0p1
status=$?
oom=$(cat /proc/vmstat | while read key value; do [ "$key" = oom_kill ] && echo "$value"; done)
echo "nfaas-agent-exit status=$status oom_kill=${oom:-0}"
poweroff -f
"""


@dataclass(frozen=True, slots=True)
class GuestImage:
    """A built image: the three artefacts and what they were made from."""

    folder: Path
    kernel: Path
    rootfs: Path
    cmdline: str
    manifest: dict[str, object]

    @property
    def digest(self) -> str:
        """One hash of every artefact: snapshots made from another image are not used."""
        return str(self.manifest["digest"])


def image_artefacts(image: GuestImage) -> dict[str, str]:
    """The image as the runtime repository records it: three artefacts and one digest."""
    return {
        "kernel": str(image.kernel),
        "rootfs": str(image.rootfs),
        "boot_parameters": image.cmdline,
        "kernel_version": str(image.manifest.get("kernel", "")),
        "digest": image.digest,
    }


def default_image_dir() -> Path:
    """Machine-wide, so every checkout and test run shares one build."""
    return Path(os.environ.get("NFAAS_MICROVM_IMAGE", "/var/cache/nfaas/microvm/python-3.11"))


def load_image(folder: Path) -> GuestImage:
    """The image in ``folder``; ``BackendUnavailable`` naming the build command if absent."""
    manifest_path = folder / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        kernel, rootfs = folder / "vmlinux", folder / "rootfs.cpio"
        cmdline = (folder / "cmdline").read_text().strip()
        if not kernel.is_file() or not rootfs.is_file():
            raise FileNotFoundError(kernel if not kernel.is_file() else rootfs)
    except (OSError, ValueError) as exc:
        raise BackendUnavailable(
            f"no microVM guest image in {folder} ({exc}); build it with "
            f"`nfaas microvm build --out {folder}` (scripts/setup does)"
        ) from exc
    if manifest.get("format") != IMAGE_FORMAT:
        raise BackendUnavailable(
            f"the microVM guest image in {folder} is of an older format; rebuild it with "
            f"`nfaas microvm build --out {folder}`"
        )
    return GuestImage(folder, kernel, rootfs, cmdline, manifest)


def build_image(out: Path, *, force: bool = False) -> GuestImage:
    """Build the guest image into ``out`` unless one of the same packages is there."""
    for tool in ("apt-get", "apt-cache", "dpkg", "lz4"):
        if shutil.which(tool) is None:
            package = {"apt-get": "apt", "apt-cache": "apt"}.get(tool, tool)
            raise BackendUnavailable(f"building a microVM image needs {tool} (install {package})")
    versions = _resolve_versions()
    if not force:
        try:
            current = load_image(out)
        except BackendUnavailable:
            pass
        else:
            if current.manifest.get("packages") == versions:
                return current
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nfaas-image-") as scratch:
        work = Path(scratch)
        unpacked = _download_and_unpack(versions, work)
        staging = Path(tempfile.mkdtemp(prefix=".build-", dir=out))
        try:
            kernel_version = _write_kernel(unpacked / KERNEL_PACKAGE, staging / "vmlinux")
            root = work / "root"
            _assemble_root(unpacked, kernel_version, root)
            with open(staging / "rootfs.cpio", "wb") as archive:
                write_archive(archive, tree_entries(root))
            (staging / "cmdline").write_text(BOOT_PARAMETERS + "\n")
            manifest = _manifest(staging, versions, kernel_version)
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            for name in ("vmlinux", "rootfs.cpio", "cmdline", "manifest.json"):
                os.replace(staging / name, out / name)  # the manifest last: it marks a whole image
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return load_image(out)


def _run(*argv: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=True)
    except subprocess.CalledProcessError as exc:
        raise SandboxStartError(
            f"`{' '.join(argv)}` failed (status {exc.returncode}): {exc.stderr.strip()[-500:]}"
        ) from exc
    return done.stdout


def _resolve_versions() -> dict[str, str]:
    """Each package's candidate version; the kernel metapackage resolved to its image."""
    depends = _run("apt-cache", "depends", KERNEL_PACKAGE)
    kernels = [line.split()[-1] for line in depends.splitlines() if "Depends: linux-image-" in line]
    if not kernels:
        raise SandboxStartError(f"{KERNEL_PACKAGE} names no kernel image package")
    names = [kernels[0], *USER_PACKAGES]
    versions: dict[str, str] = {}
    package = ""
    for line in _run("apt-cache", "policy", *names).splitlines():
        if not line.startswith(" "):
            package = line.rstrip(":")
        elif line.strip().startswith("Candidate:") and line.split()[-1] != "(none)":
            versions[package] = line.split()[-1]
    missing = [name for name in names if name not in versions]
    if missing:
        raise SandboxStartError(
            f"the distribution has no package {', '.join(missing)} (apt-get update?)"
        )
    return versions


def _download_and_unpack(versions: dict[str, str], work: Path) -> Path:
    debs = work / "debs"
    debs.mkdir()
    os.chmod(work, 0o755)  # apt's sandbox user downloads into it
    os.chmod(debs, 0o777)
    _run("apt-get", "download", "-q", *(f"{n}={v}" for n, v in versions.items()), cwd=debs)
    unpacked = work / "unpacked"
    unpacked.mkdir()
    for deb in sorted(debs.glob("*.deb")):
        name = deb.name.split("_", 1)[0]
        target = unpacked / (KERNEL_PACKAGE if name.startswith("linux-image-") else "user")
        _run("dpkg", "-x", str(deb), str(target))
    return unpacked


def _write_kernel(package_root: Path, dest: Path) -> str:
    """Take the ELF kernel out of ``vmlinuz`` (an LZ4 payload behind the boot stub)."""
    (vmlinuz,) = sorted((package_root / "boot").glob("vmlinuz-*"))
    data = vmlinuz.read_bytes()
    start = data.find(b"\x02\x21\x4c\x18")  # the LZ4 legacy frame's magic
    if start < 0:
        raise SandboxStartError(f"{vmlinuz.name} holds no LZ4 payload (a kernel built otherwise?)")
    # lz4 stops with an error at the bytes that follow the payload; what it wrote is whole
    lz4 = subprocess.run(["lz4", "-dc"], input=data[start:], capture_output=True, check=False)
    if not lz4.stdout.startswith(b"\x7fELF"):
        raise SandboxStartError(f"cannot decompress {vmlinuz.name}: {lz4.stderr.decode()[-300:]}")
    dest.write_bytes(lz4.stdout)
    return vmlinuz.name.removeprefix("vmlinuz-")


def _assemble_root(unpacked: Path, kernel_version: str, root: Path) -> None:
    user = unpacked / "user"
    for folder in ("proc", "sys", "dev", "tmp", "opt/nfaas", "lib/modules/nfaas", "bin", "usr"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    shutil.copy2(user / "bin/busybox", root / "bin/busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    for tree in ("lib", "lib64", "usr/lib", "usr/bin"):
        if (user / tree).exists():
            shutil.copytree(user / tree, root / tree, symlinks=True, dirs_exist_ok=True)
    _prune(root)
    modules = unpacked / KERNEL_PACKAGE / "lib/modules" / kernel_version / "kernel"
    for number, module in enumerate(MODULES):
        shutil.copy2(modules / module, root / "lib/modules/nfaas" / f"{number}-{Path(module).name}")
    init = root / "init"
    init.write_text(INIT_SCRIPT)
    init.chmod(0o755)
    _compile_stdlib(root / "usr/lib" / PYTHON)


def _prune(root: Path) -> None:
    stdlib = root / "usr/lib" / PYTHON
    for part in STDLIB_LEFT_OUT:
        shutil.rmtree(stdlib / part, ignore_errors=True)
    for path in (root / "usr/lib/x86_64-linux-gnu/gconv", root / "usr/lib/x86_64-linux-gnu/engines-3",
                 root / "usr/lib/x86_64-linux-gnu/ossl-modules"):  # fmt: skip
        shutil.rmtree(path, ignore_errors=True)
    for path in list(root.rglob("*")):
        if path.is_dir() and not path.is_symlink() and path.name == "__pycache__":
            shutil.rmtree(path)
    for path in list((root / "usr/bin").iterdir()):
        if path.name != PYTHON:
            path.unlink()


def _compile_stdlib(stdlib: Path) -> None:
    """Bytecode for every module, checked by nothing at import (the image is read-only)."""
    guest = Path("/usr/lib") / PYTHON
    for source in stdlib.rglob("*.py"):
        relative = source.relative_to(stdlib)
        try:
            py_compile.compile(
                str(source),
                cfile=_cache_path(source),
                dfile=str(guest / relative),
                doraise=True,
                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            )
        except py_compile.PyCompileError:
            continue  # a module with syntax of another version (lib2to3's fixtures); left as source


def _cache_path(source: Path) -> str:
    tag = sys.implementation.cache_tag
    return str(source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc")


def _manifest(folder: Path, versions: dict[str, str], kernel_version: str) -> dict[str, object]:
    artefacts = {name: _sha256(folder / name) for name in ("vmlinux", "rootfs.cpio", "cmdline")}
    digest = hashlib.sha256(json.dumps(artefacts, sort_keys=True).encode()).hexdigest()
    return {
        "format": IMAGE_FORMAT,
        "kernel": kernel_version,
        "packages": versions,
        "artefacts": artefacts,
        "digest": digest,
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        while chunk := data.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


#: nfaas's own libraries for functions (the NF framework), under nfaas/
GUEST_LIBRARIES = ("nf", "flows.py")
#: folders of a package the guest does not need (tests, C headers, build helpers)
PACKAGE_LEFT_OUT = frozenset({"tests", "include", "f2py", "_pyinstaller", "__pyinstaller"})


def agent_files(packages: Sequence[str] = ()) -> Iterator[tuple[str, Path]]:
    """The guest agent, what it imports, and ``packages`` from the platform's own
    environment (with their bytecode, and a wheel's ``<name>.libs``), as
    (path under /opt/nfaas, host file)."""
    import nfaas

    package = Path(nfaas.__file__).parent
    for relative in (
        "__init__.py",
        "errors.py",
        "sandboxes/__init__.py",
        "sandboxes/protocol.py",
        "sandboxes/worker.py",
        "sandboxes/microvm/__init__.py",
        "sandboxes/microvm/agent.py",
    ):
        yield f"nfaas/{relative}", package / relative
    for library in GUEST_LIBRARIES:  # what functions may import of nfaas itself
        path = package / library
        sources = sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.exists() else []
        for source in sources:
            yield f"nfaas/{source.relative_to(package).as_posix()}", source
    for name in ("msgpack", "orjson", *packages):
        folder = Path(importlib.import_module(name).__file__ or "").parent
        for root in (folder, folder.with_name(f"{folder.name}.libs")):
            for path in sorted(root.rglob("*")) if root.is_dir() else ():
                parts = set(path.relative_to(root).parts)
                if path.is_file() and path.suffix != ".pyi" and not parts & PACKAGE_LEFT_OUT:
                    yield f"{root.name}/{path.relative_to(root).as_posix()}", path


def agent_layer(
    dest: Path, overrides: Mapping[str, bytes] | None = None, packages: Sequence[str] = ()
) -> str:
    """Write the agent's initramfs layer to ``dest``; returns its SHA-256.

    Files keep their mtimes, so the bytecode next to them stays valid in the
    guest. ``overrides`` (path under /opt/nfaas -> content) replace or add files:
    tests make guests whose agent misbehaves with it.
    """
    files: dict[str, tuple[bytes, int]] = {}
    for guest, host in agent_files(packages):
        files[guest] = (host.read_bytes(), int(host.stat().st_mtime))
    for guest, content in (overrides or {}).items():
        files[guest] = (content, FIXED_MTIME)
    entries: list[Entry] = []
    folders: set[str] = set()
    for guest, (content, mtime) in sorted(files.items()):
        parts = f"opt/nfaas/{guest}".split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder not in folders:
                folders.add(folder)
                entries.append(Entry.directory(folder))
        perm = 0o755 if ".so" in Path(guest).name else 0o644
        entries.append(Entry.file("/".join(parts), content, perm, mtime))
    entries.sort(key=lambda e: e.path)
    with open(dest, "wb") as out:
        write_archive(out, entries)
    return _sha256(dest)
