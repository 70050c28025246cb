"""What one container is made of: its OCI bundle (``config.json``) and its cgroup.

EVE025 clause 4.3 / key issue #7.1: a container isolates by namespaces and
resource limits on a shared kernel. The bundle here gives the worker a
read-only root (``RuntimeRoot``: an empty folder holding only mount points,
shared by every container of a backend) onto which the host's runtime folders
are bind-mounted read-only at the same paths (``/usr`` and its merged-usr
links, the interpreter's prefix, the virtualenv and the nfaas package, found
from the running interpreter), a private ``/tmp`` (tmpfs), the instance's code
folder at ``/code`` (read-only; the backend fills it at ``load``), and new PID,
mount, IPC, UTS and network namespaces (the last holds only ``lo``). The
worker runs as an unprivileged uid with no capabilities and no_new_privs; the
device cgroup allows only runc's default devices (null, zero, full, random,
urandom, tty).

``ContainerCgroup`` reads and writes the container's cgroup v1 files directly:
a write takes microseconds where ``runc update`` forks a Go program (~10 ms),
and ``load`` sets the function's limits on that path.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nfaas

CGROUP_ROOT = Path("/sys/fs/cgroup")
#: the cgroup v1 controllers whose limits and counters the backend uses
CONTROLLERS = ("memory", "cpu", "cpuacct", "pids")
CODE_MOUNT = "/code"
CPU_PERIOD_US = 100_000
#: what a container's /proc hides or freezes (runc's own defaults in ``runc spec``)
MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
_NO_CAPABILITIES: dict[str, list[str]] = {
    kind: [] for kind in ("bounding", "effective", "inheritable", "permitted", "ambient")
}


def runtime_paths(python: str) -> list[str]:
    """The host folders the interpreter ``python`` and the worker need, outermost first.

    ``/usr`` (Debian's interpreter and its shared libraries), the prefixes of the
    running interpreter and its virtualenv, and the nfaas package's folder, minus
    any already under another.
    """
    wanted = ["/usr", sys.base_prefix, sys.prefix, str(Path(nfaas.__file__).parent)]
    wanted.append(str(Path(python).parent.parent))  # .../bin/python -> its prefix
    kept: list[str] = []
    for path in sorted({os.path.normpath(p) for p in wanted}, key=len):
        if path == "/" or not os.path.isdir(path):  # never the host's whole root
            continue
        if not any(path == k or path.startswith(k + "/") for k in kept):
            kept.append(path)
    return kept


class RuntimeRoot:
    """The read-only root every container of a backend shares: only mount points.

    The merged-usr links of the host (``/bin -> usr/bin``, ``/lib64 -> usr/lib64``)
    are copied as links; a top-level folder that is not a link is bind-mounted.
    """

    TOP_LEVEL = ("bin", "lib", "lib32", "lib64", "libx32", "sbin")

    def __init__(self, folder: Path, binds: Iterable[str]) -> None:
        self.folder = folder
        self.binds = list(binds)
        folder.mkdir(mode=0o755)
        for name in self.TOP_LEVEL:
            host = Path("/", name)
            if host.is_symlink():
                (folder / name).symlink_to(os.readlink(host))
            elif host.is_dir():
                self.binds.append(str(host))
        for mount_point in [*self.binds, "/proc", "/dev", "/tmp", CODE_MOUNT]:
            (folder / mount_point.lstrip("/")).mkdir(parents=True, exist_ok=True)
        # runc gives a tmpfs the mode of the folder it is mounted on, whatever ``mode=`` says
        (folder / "tmp").chmod(0o1777)


@dataclass(frozen=True, slots=True)
class BundleSpec:
    """What differs between containers of one backend."""

    args: list[str]
    env: dict[str, str]
    uid: int
    gid: int
    cgroups_path: str
    memory_mb: int
    cpu: float
    pids: int
    open_files: int
    tmp_mb: int


def bundle_config(root: RuntimeRoot, code_folder: Path, spec: BundleSpec) -> dict[str, Any]:
    """The OCI runtime ``config.json`` of one container (runtime-spec 1.0.2)."""
    memory = spec.memory_mb * 1024 * 1024
    binds = [
        {"destination": path, "type": "bind", "source": path, "options": _RO_BIND}
        for path in root.binds
    ]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": spec.uid, "gid": spec.gid},
            "args": spec.args,
            "env": [f"{k}={v}" for k, v in spec.env.items()],
            "cwd": "/tmp",
            "capabilities": _NO_CAPABILITIES,
            "rlimits": [
                {"type": "RLIMIT_NOFILE", "hard": spec.open_files, "soft": spec.open_files},
                {"type": "RLIMIT_CORE", "hard": 0, "soft": 0},
            ],
            "noNewPrivileges": True,
        },
        "root": {"path": str(root.folder), "readonly": True},
        "hostname": "nfaas",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=64k"],
            },
            {
                "destination": "/tmp",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=1777", f"size={spec.tmp_mb}m"],
            },
            *binds,
            {
                "destination": CODE_MOUNT,
                "type": "bind",
                "source": str(code_folder),
                "options": [*_RO_BIND, "noexec"],
            },
        ],
        "linux": {
            "namespaces": [{"type": kind} for kind in ("pid", "network", "ipc", "uts", "mount")],
            "cgroupsPath": spec.cgroups_path,
            "resources": {
                "devices": [{"allow": False, "access": "rwm"}],
                "memory": {"limit": memory, "swap": memory},
                "cpu": {"quota": int(spec.cpu * CPU_PERIOD_US), "period": CPU_PERIOD_US},
                "pids": {"limit": spec.pids},
            },
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    }


_RO_BIND = ["bind", "ro", "nosuid", "nodev"]


def stage_code(source: Path, dest: Path) -> None:
    """Make ``source`` (a code folder) the contents of ``dest``: hard links where the file
    system allows, copies elsewhere. Code folders are content-addressed and never
    written to, and /code is mounted read-only, so a link cannot change the original."""

    def link_or_copy(src: str, dst: str) -> object:
        try:
            os.link(src, dst)
            return dst
        except OSError:
            return shutil.copy2(src, dst)

    if not source.is_dir():
        raise FileNotFoundError(f"the code folder {source} does not exist")
    shutil.copytree(source, dest, symlinks=False, copy_function=link_or_copy, dirs_exist_ok=True)
    for folder, dirs, _ in os.walk(dest):
        for name in dirs:
            os.chmod(os.path.join(folder, name), 0o755)


class ContainerCgroup:
    """One container's cgroup v1 folders (``cgroupsPath`` under each controller)."""

    def __init__(self, cgroups_path: str) -> None:
        self.path = cgroups_path
        rel = cgroups_path.lstrip("/")
        self.memory = CGROUP_ROOT / "memory" / rel
        self.cpu = CGROUP_ROOT / "cpu" / rel
        self.cpuacct = CGROUP_ROOT / "cpuacct" / rel
        self.pids = CGROUP_ROOT / "pids" / rel

    def set_limits(self, memory_mb: int, cpu: float, pids: int) -> None:
        """The function's limits (EVE025 7.2.3 step 4); OSError if the kernel refuses."""
        limit = str(memory_mb * 1024 * 1024)
        try:  # lowering: memory first, since memory + swap may never be below it
            _write(self.memory / "memory.limit_in_bytes", limit)
            _write(self.memory / "memory.memsw.limit_in_bytes", limit)
        except OSError:  # raising: memory + swap first
            _write(self.memory / "memory.memsw.limit_in_bytes", limit)
            _write(self.memory / "memory.limit_in_bytes", limit)
        _write(self.cpu / "cpu.cfs_quota_us", str(max(1000, int(cpu * CPU_PERIOD_US))))
        _write(self.pids / "pids.max", str(pids))

    def oom_kills(self) -> int:
        """Processes the kernel's OOM killer ended in this cgroup (0 once it is gone)."""
        try:
            text = (self.memory / "memory.oom_control").read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill":
                return int(value)
        return 0

    def memory_bytes(self) -> int:
        return _read_int(self.memory / "memory.usage_in_bytes")

    def cpu_seconds(self) -> float:
        return _read_int(self.cpuacct / "cpuacct.usage") / 1e9

    def pids_in(self) -> list[int]:
        try:
            return [int(p) for p in (self.memory / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def exists(self) -> bool:
        """Whether any hierarchy still holds this container's cgroup."""
        return any((h / self.path.lstrip("/")).exists() for h in _hierarchies())

    # runc makes and removes a container's folders; the microVM backend, whose QEMU
    # processes runc does not start, does it with these.

    def create(self) -> None:
        for folder in self._folders():
            folder.mkdir(parents=True, exist_ok=True)

    def add(self, pid: int) -> None:
        """Move process ``pid`` (all its threads) into the cgroup."""
        for folder in self._folders():
            _write(folder / "cgroup.procs", str(pid))

    def remove(self) -> None:
        """Remove the folders; each must be empty (its processes ended)."""
        for folder in self._folders():
            try:
                folder.rmdir()
            except OSError:
                pass

    def _folders(self) -> list[Path]:
        """One folder per hierarchy (cpu and cpuacct are often one, linked twice)."""
        seen: dict[Path, Path] = {}
        for folder in (self.memory, self.cpu, self.cpuacct, self.pids):
            hierarchy = folder.parents[len(Path(self.path.lstrip("/")).parts) - 1]
            seen.setdefault(hierarchy.resolve(), folder)
        return list(seen.values())


def remove_parent_cgroups(parent: str) -> None:
    """Remove the backend's cgroup folder (or those ``parent``, a glob pattern, names) in
    every hierarchy runc used, each once empty."""
    for hierarchy in _hierarchies():
        for folder in hierarchy.glob(parent.lstrip("/")):  # a pattern: one backend's, or all
            try:
                folder.rmdir()
            except OSError:
                pass


def _hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy: runc makes a folder in each (v1 controllers, the
    named systemd one, and the unified one of a hybrid layout)."""
    try:
        return [
            entry for entry in CGROUP_ROOT.iterdir() if entry.is_dir() and not entry.is_symlink()
        ]
    except OSError:
        return []


def _write(path: Path, value: str) -> None:
    with open(path, "w") as file:
        file.write(value)


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return 0
