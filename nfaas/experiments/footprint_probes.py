"""What a sandbox costs while it deploys: its memory as its own accounting reports it, and CPU.

One ``MemoryProbe`` per backend, read from a sampler thread every few ms:

* process: the worker's PSS (``/proc/PID/smaps_rollup``). A worker is forked
  from a warm zygote and shares most of its pages with it; PSS counts each
  shared page by its share, so it is what the instance adds, where RSS would
  count the zygote's interpreter again in every worker.
* container: the backend's cgroup (``memory.usage_in_bytes`` of its parent
  folder, hierarchical), which holds only the sandbox being measured.
* microvm: the memory cgroup of the VM's QEMU process (a child of this process).
* wasm: the growth of this process's RSS since the deployment began (the
  instance lives in the platform's process).

Before the sandbox exists each reads 0, as the paper's curves start from the
node's baseline.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nfaas.sandboxes.base import Sandbox, SandboxBackend

CGROUP_MEMORY = Path("/sys/fs/cgroup/memory")
PAGE = os.sysconf("SC_PAGE_SIZE")
#: the microVM backend's cgroup folders (``nfaas.sandboxes.microvm.backend.WORK_PREFIX``)
VM_CGROUP_PREFIX = "nfaas-microvm-"


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def pss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0


def child_pids() -> list[int]:
    pids: list[int] = []
    for task in Path("/proc/self/task").iterdir():
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return pids


def qemu_memory_bytes(ignore: frozenset[int] = frozenset()) -> int:
    """The memory cgroup usage of this process's QEMU children but ``ignore`` (the VMs of
    earlier sandboxes, which may still be ending)."""
    total = 0
    for pid in child_pids():
        if pid in ignore:
            continue
        try:
            if not Path(f"/proc/{pid}/comm").read_text().startswith("qemu"):
                continue
            for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
                _, controllers, path = line.split(":", 2)
                # until the backend moves QEMU into its own cgroup, it is in ours: not counted
                if "memory" in controllers.split(",") and path.startswith(f"/{VM_CGROUP_PREFIX}"):
                    total += _read_int(CGROUP_MEMORY / path.lstrip("/") / "memory.usage_in_bytes")
        except (OSError, ValueError):
            continue
    return total


MemoryProbe = Callable[[], int]


def memory_probe(name: str, backend: SandboxBackend, sandbox: Sandbox) -> MemoryProbe:
    """The probe of one sandbox of backend ``name`` (see the module)."""
    if name == "process":

        def process() -> int:
            pid = getattr(sandbox, "pid", None)
            return pss_bytes(pid) if isinstance(pid, int) else 0

        return process
    if name == "container":
        parent = str(getattr(backend, "cgroup_parent", "")).lstrip("/")
        return lambda: _read_int(CGROUP_MEMORY / parent / "memory.usage_in_bytes")
    if name == "microvm":
        earlier = frozenset(child_pids())
        return lambda: qemu_memory_bytes(earlier)
    baseline = rss_bytes(os.getpid())
    return lambda: max(0, rss_bytes(os.getpid()) - baseline)


@dataclass(slots=True)
class Sampler:
    """Reads a probe every ``interval_s`` on its own thread, from ``start`` to ``stop``."""

    probe: MemoryProbe
    interval_s: float
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    t0: float = 0.0

    def start(self) -> None:
        self.t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - self.t0, self.probe()))
            self._stop.wait(self.interval_s)

    def stop(self) -> list[tuple[float, int]]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.samples.append((time.monotonic() - self.t0, self.probe()))
        return self.samples


def cpu_now() -> float:
    """User + system CPU of this process and its reaped children, seconds."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def proc_cpu_s(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0
