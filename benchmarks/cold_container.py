"""Cold start of the container backend (runc): from nothing, from a pool, and warm, beside runc.

Taken on the backend directly (``ContainerBackend`` / ``ContainerSandbox``), as the
phases table of the other cold starts is: the cold start is the function's first
line (``Result.first_line_at``, CLOCK_MONOTONIC) minus the moment the path began.

* from nothing: ``prepare`` (``runc run --detach`` of a bundle with the worker, and
  the worker's ``ready``) + ``load`` (code staged, cgroup limits written, load frame)
  + ``invoke`` to the handler's first line;
* from a pool: ``load`` + ``invoke`` on a sandbox prepared before, after a short idle
  pause as a pooled sandbox has;
* warm: the round trip of further invocations of the loaded sandbox.

Floor: a bare ``runc run --detach`` of an equivalent bundle (same root, mounts,
namespaces, user, cgroup limits) whose process is the same interpreter with the
same flags, importing the worker module and writing one byte on an inherited
pipe: spawn -> byte. Beside it, three parts of that floor: the same bundle running
the interpreter without the worker import, and the same two commands spawned on
the host without any container. The floor and the paths alternate in
chunks; every container is deleted in ``finally`` (``runc list`` is checked empty
of ours at the end).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import uvloop

from benchmarks.figures import Figure, Goal, Section
from benchmarks.functions import APP, PYTHON_ECHO
from benchmarks.processes import BenchmarkError
from benchmarks.stats import summarize
from nfaas.sandboxes.base import Event, FunctionCode, Limits
from nfaas.sandboxes.container import (
    INTERPRETER_FLAGS,
    ContainerBackend,
    ContainerConfig,
    ContainerSandbox,
    import_paths,
)
from nfaas.sandboxes.container_bundle import (
    BundleSpec,
    RuntimeRoot,
    bundle_config,
    remove_parent_cgroups,
    runtime_paths,
)

#: issue 3's goals for the container backend
POOL_GOAL = Goal("at_most", 15.0, "pool p50 ≤ 15 ms")
NOTHING_GOAL = Goal("at_most", 60.0, "from nothing p50 ≤ 60 ms")
OVERHEAD_GOAL = Goal("ratio_at_most", 1.10, "overhead over the floor < 10%")
MS = 1000.0
#: the idle pause of a pooled sandbox before its event, and between samples
SETTLE_S = 0.02
CHUNKS = 5
#: warm invocations timed per pooled sandbox, after its cold one
WARM_PER_SANDBOX = 5
BENCH_PREFIX = "nfaas-bench-"
#: the backend's containers (nfaas- and 12 hex digits) and the floor's
OURS = re.compile(r"^nfaas-(bench-)?[0-9a-f]{12}$")
FLOOR_TIMEOUT_S = 10.0

WORKER_IMPORT = "import os, nfaas.sandboxes.worker; os.write(3, b'x')"
NO_IMPORT = "import os; os.write(3, b'x')"
#: floor: runc + interpreter + worker import; no_worker_import: runc + interpreter;
#: no_container: interpreter + worker import; interpreter_only: the interpreter alone
FLOOR_KINDS = ("floor", "no_worker_import", "no_container", "interpreter_only")

PHASE_PREPARE = "prepare (not paid from a pool)"
PHASE_LOAD = "load"
PHASE_FIRST = "invoke -> first line"


def _interpreter(config: ContainerConfig, code: str) -> list[str]:
    # the flags the backend starts its container's init with
    return [config.python, *INTERPRETER_FLAGS, "-c", code]


def _env(config: ContainerConfig) -> dict[str, str]:
    # the environment the backend starts its container's init with
    return {**config.env, "PYTHONPATH": ":".join(import_paths())}


class BareRunc:
    """Bare ``runc run`` of bundles equivalent to the backend's, each writing one byte."""

    def __init__(self, config: ContainerConfig, work: Path) -> None:
        self.config = config
        self.work = work
        work.mkdir(mode=0o711)
        work.chmod(0o711)  # as the backend's folder
        runc = shutil.which(config.runc)
        if runc is None:
            raise BenchmarkError(f"{config.runc} not found")
        self.runc = runc
        self.root = RuntimeRoot(work / "rootfs", runtime_paths(config.python))
        self.code_folder = work / "code"
        self.code_folder.mkdir(mode=0o755)
        self.cgroup_parent = f"/{BENCH_PREFIX}{secrets.token_hex(4)}"
        self.live: set[str] = set()

    def _bundle(self, container_id: str, args: list[str]) -> Path:
        bundle = self.work / container_id
        bundle.mkdir(mode=0o700)
        c = self.config
        spec = BundleSpec(
            args=args, env=_env(c), uid=c.uid, gid=c.gid,
            cgroups_path=f"{self.cgroup_parent}/{container_id}",
            memory_mb=c.pool_memory_mb, cpu=c.pool_cpu, pids=4 + c.tasks,
            open_files=c.open_files, tmp_mb=c.tmp_mb,
        )  # fmt: skip
        (bundle / "config.json").write_text(
            json.dumps(bundle_config(self.root, self.code_folder, spec))
        )
        return bundle

    def _runc(self, *args: str) -> list[str]:
        root = ["--root", str(self.config.runc_root)] if self.config.runc_root else []
        return [self.runc, *root, *args]

    def sample(self, kind: str) -> float:
        """One spawn -> byte, in seconds; ``kind`` is one of ``FLOOR_KINDS``."""
        bare = kind in ("no_worker_import", "interpreter_only")
        args = _interpreter(self.config, NO_IMPORT if bare else WORKER_IMPORT)
        container_id = ""
        if kind in ("no_container", "interpreter_only"):
            argv, env = args, _env(self.config)
        else:
            container_id = f"{BENCH_PREFIX}{secrets.token_hex(6)}"
            bundle = self._bundle(container_id, args)
            self.live.add(container_id)
            argv = self._runc(
                "run", "--detach", "--preserve-fds", "1", "--bundle", str(bundle), container_id
            )
            env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        r, w = os.pipe()
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_DUP2, w, 3),
        ]
        try:
            started = time.monotonic()
            pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
            os.close(w)
            w = -1
            ready, _, _ = select.select([r], [], [], FLOOR_TIMEOUT_S)
            got = os.read(r, 1) if ready else b""
            took = time.monotonic() - started
            os.waitpid(pid, 0)
            if got != b"x":
                raise BenchmarkError(f"bare {kind}: no byte within {FLOOR_TIMEOUT_S:g} s")
            return took
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
            if container_id:
                self.delete(container_id)

    def delete(self, container_id: str) -> None:
        subprocess.run(
            self._runc("delete", "--force", container_id),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30, check=False,
        )  # fmt: skip
        self.live.discard(container_id)
        shutil.rmtree(self.work / container_id, ignore_errors=True)

    def close(self) -> None:
        for container_id in list(self.live):
            self.delete(container_id)
        remove_parent_cgroups(self.cgroup_parent)


def runc_ids(config: ContainerConfig) -> set[str]:
    """Containers runc lists that are named as the backend's or the floor's are: another
    program's (say a broker an experiment runs, ``nfaas-broker-...``) are not ours."""
    runc = shutil.which(config.runc) or config.runc
    root = ["--root", str(config.runc_root)] if config.runc_root else []
    out = subprocess.run(
        [runc, *root, "list", "-q"], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    return {line for line in out.split() if OURS.match(line)}


async def _sandbox(backend: ContainerBackend) -> ContainerSandbox:
    sandbox = backend.create()
    assert isinstance(sandbox, ContainerSandbox)
    return sandbox


async def from_nothing(
    backend: ContainerBackend, code: FunctionCode, n: int, phases: dict[str, list[float]]
) -> list[float]:
    """``n`` cold starts from nothing, seconds: prepare + load + invoke -> first line."""
    out: list[float] = []
    for _ in range(n):
        sandbox = await _sandbox(backend)
        try:
            t0 = time.monotonic()
            await sandbox.prepare()
            t1 = time.monotonic()
            await sandbox.load(code)
            t2 = time.monotonic()
            result = await sandbox.invoke(Event("invoke", b"x"))
        finally:
            await sandbox.aclose()
        if result.first_line_at is None:
            raise BenchmarkError("container: the sandbox reported no first line")
        out.append(result.first_line_at - t0)
        phases[PHASE_PREPARE].append(t1 - t0)
        phases[PHASE_LOAD].append(t2 - t1)
        phases[PHASE_FIRST].append(result.first_line_at - t2)
        await asyncio.sleep(SETTLE_S)  # the deleted container's aftermath settles
    return out


async def from_pool(
    backend: ContainerBackend, code: FunctionCode, n: int, warm: list[float]
) -> list[float]:
    """``n`` cold starts from a prepared sandbox (load + invoke -> first line), seconds.

    Each sandbox then takes ``WARM_PER_SANDBOX`` warm invocations, timed into ``warm``.
    """
    out: list[float] = []
    event = Event("invoke", b"x")
    for _ in range(n):
        sandbox = await _sandbox(backend)
        try:
            await sandbox.prepare()
            await asyncio.sleep(SETTLE_S)  # as a pooled sandbox waits for its event
            t0 = time.monotonic()
            await sandbox.load(code)
            result = await sandbox.invoke(event)
            for _ in range(WARM_PER_SANDBOX):
                w0 = time.monotonic()
                await sandbox.invoke(event)
                warm.append(time.monotonic() - w0)
        finally:
            await sandbox.aclose()
        if result.first_line_at is None:
            raise BenchmarkError("container: the sandbox reported no first line")
        out.append(result.first_line_at - t0)
        await asyncio.sleep(SETTLE_S)
    return out


async def _run(samples: int) -> Section:
    section = Section(
        "cold-container",
        "Cold start, container backend (runc, Python)",
        "bare `runc run --detach` of an equivalent bundle whose process is the same "
        "interpreter importing the worker module, spawn → 1 byte on a pipe",
    )
    config = ContainerConfig()
    before = runc_ids(config)  # a platform running beside the benchmark may have its own
    usable, why = ContainerBackend.availability()
    if not usable:
        raise BenchmarkError(f"the container backend is unavailable: {why}")
    nothing: list[float] = []
    pool: list[float] = []
    warm: list[float] = []
    phases: dict[str, list[float]] = {PHASE_PREPARE: [], PHASE_LOAD: [], PHASE_FIRST: []}
    floors: dict[str, list[float]] = {kind: [] for kind in FLOOR_KINDS}
    per_chunk = -(-samples // CHUNKS)
    with tempfile.TemporaryDirectory(prefix="nfaas-bench-container-") as tmp:
        folder = Path(tmp) / "function"
        folder.mkdir()
        (folder / "echo.py").write_text(PYTHON_ECHO)
        code = FunctionCode(APP, "echo", "1", "echo:handle", folder, Limits())
        bare = BareRunc(config, Path(tmp) / "bare")
        backend = ContainerBackend(config)
        try:
            await backend.start()
            # One of each first: page cache, runc's binary, the interpreter's imports.
            await from_nothing(backend, code, 1, {k: [] for k in phases})
            await from_pool(backend, code, 1, [])
            for kind in FLOOR_KINDS:
                bare.sample(kind)
            while len(nothing) < samples:
                n = min(per_chunk, samples - len(nothing))
                for _ in range(n):
                    for kind in FLOOR_KINDS:
                        floors[kind].append(bare.sample(kind))
                        time.sleep(SETTLE_S)  # noqa: ASYNC251  nothing else runs meanwhile
                nothing += await from_nothing(backend, code, n, phases)
                pool += await from_pool(backend, code, n, warm)
        finally:
            await backend.aclose()
            bare.close()
    left = sorted(runc_ids(config) - before)
    if left:
        raise BenchmarkError(f"containers left behind: {left}")

    s_nothing = summarize(nothing).scaled(MS)
    s_pool = summarize(pool).scaled(MS)
    s_warm = summarize(warm).scaled(MS)
    s_floors = {kind: summarize(v).scaled(MS) for kind, v in floors.items()}
    floor = s_floors["floor"]
    section.add(
        Figure("nothing.p50", "from nothing, p50", "ms", s_nothing.p50, floor.p50, NOTHING_GOAL)
    )
    section.add(
        Figure(
            "nothing.overhead", "from nothing over the floor, p50", "ms",
            s_nothing.p50, floor.p50, OVERHEAD_GOAL,
        )
    )  # fmt: skip
    section.add(Figure("nothing.p90", "from nothing, p90", "ms", s_nothing.p90, floor.p90))
    section.add(Figure("nothing.p99", "from nothing, p99", "ms", s_nothing.p99, floor.p99))
    section.add(Figure("pool.p50", "from a pool, p50", "ms", s_pool.p50, None, POOL_GOAL))
    section.add(Figure("pool.p90", "from a pool, p90", "ms", s_pool.p90))
    section.add(Figure("warm.p50", "warm invoke, p50", "ms", s_warm.p50))
    section.add(Figure("warm.p90", "warm invoke, p90", "ms", s_warm.p90))
    section.method = (
        f"{s_nothing.n} cold starts from nothing and {s_pool.n} from a prepared sandbox (after "
        f"a {SETTLE_S * MS:.0f} ms idle pause), on ContainerBackend directly under uvloop, "
        f"echo function with default limits; {s_warm.n} warm invocations "
        f"({WARM_PER_SANDBOX} per pooled sandbox after its first). Floor: {floor.n} bare "
        f"`runc run`s, with as many of the same bundle without the worker import and of both "
        f"commands spawned on the host without a container. Floors and both paths "
        f"alternate in {CHUNKS} chunks; every container was deleted and `runc list` was "
        f"empty of ours at the end."
    )
    section.detail = {
        "nothing": s_nothing.as_dict(),
        "pool": s_pool.as_dict(),
        "warm": s_warm.as_dict(),
        "floor": floor.as_dict(),
        "floor_parts_ms": {k: v.as_dict() for k, v in s_floors.items() if k != "floor"},
        "phases_ms": {k: summarize(v).scaled(MS).as_dict() for k, v in phases.items()},
    }
    return section


def run(samples: int) -> Section:
    return uvloop.run(_run(samples))
