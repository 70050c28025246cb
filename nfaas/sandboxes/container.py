"""The container backend: Python functions in runc containers with cgroup limits.

EVE025 clause 4.3 (key issue #7.1): an OS container shares the host kernel and
isolates by namespaces and cgroups. Each sandbox is one OCI bundle run by runc
(``nfaas.sandboxes.container_bundle``): a read-only root with the host's
runtime folders bind-mounted read-only, its own PID, mount, IPC, UTS and
network namespaces, a private tmpfs ``/tmp``, an unprivileged uid without
capabilities, and cgroup v1 memory, CPU and pids limits.

The function runs behind the process backend's worker protocol, unchanged: the
container's first process (``nfaas.sandboxes.container_init``) forks the same
worker on the socket runc passes in (``--preserve-fds``), and the sandbox is
the process backend's ``ProcessSandbox`` with the container in place of a
forked child. ``prepare`` (EVE025 7.2.3 steps 1-3) is ``runc run --detach``
and the worker's ``ready``, so a pool holds ready containers; ``load`` (steps
4-5) links or copies the code into the instance's folder, mounted read-only at
``/code`` (no fd of a host folder ever enters the container: ``..`` from it
would lead out), writes the function's limits into the container's cgroup and
sends the load frame. A timeout kills the container's init through a pidfd,
which ends its whole PID namespace. A worker the kernel's OOM killer ended
(the cgroup's ``oom_kill`` count) is ``FunctionOutOfMemory``; any other end is
``FunctionCrashed`` with the exit status the init reports.

``aclose`` kills the container, ``runc delete --force``s it (which removes its
cgroups) and removes its bundle; the backend's ``aclose`` does so for any
container left and removes its own folders. A platform killed outright leaves
its containers stopped (each worker ends when the platform's end of its socket
closes, and the namespace with it); the next backend to start deletes them,
their empty cgroup folders and the work folders of backends whose process is gone.

Memory: ``memory_mb`` caps the whole container (runtime included, ~11 MB for an
idle worker), as a container's limit does; the worker's own RLIMIT_DATA (set by
the worker, ``memory_mb`` above what it maps) still turns one huge allocation
into a clean ``MemoryError``, while pages touched past the cgroup's limit bring
the OOM killer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import site
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import nfaas
from nfaas.errors import (
    BackendUnavailable,
    FunctionFailure,
    FunctionOutOfMemory,
    SandboxStartError,
)
from nfaas.sandboxes.base import FunctionCode, Sandbox, SandboxBackend, SandboxState, SandboxStats
from nfaas.sandboxes.container_bundle import (
    CODE_MOUNT,
    BundleSpec,
    ContainerCgroup,
    RuntimeRoot,
    bundle_config,
    remove_parent_cgroups,
    runtime_paths,
    stage_code,
)
from nfaas.sandboxes.container_init import SOCKET_FD, STATUS, STATUS_FD
from nfaas.sandboxes.process import DEFAULT_ENV
from nfaas.sandboxes.process_sandbox import ProcessSandbox
from nfaas.sandboxes.protocol import DEFAULT_MAX_FRAME, Message
from nfaas.sandboxes.protocol import pack as pack_frame
from nfaas.sandboxes.zygote_client import WorkerHandle

logger = logging.getLogger(__name__)

DEBIAN_PACKAGE = "runc"
#: every container of this backend is named so (``runc list`` shows whose it is)
CONTAINER_PREFIX = "nfaas-"
WORK_PREFIX = "nfaas-containers-"
#: the container's interpreter skips ``site`` (-S): importing it, and the finder of an
#: editable install, took a quarter of a bare container's start; ``import_paths`` says
#: instead where nfaas and its dependencies are
INTERPRETER_FLAGS = ("-u", "-B", "-P", "-S")
#: tasks a worker needs of its own beyond the function's threads (init, worker, hangup thread)
WORKER_TASKS = 4


def import_paths() -> list[str]:
    """Where the worker's imports live: the folder holding nfaas, then site-packages."""
    return [str(Path(nfaas.__file__).parent.parent), *site.getsitepackages()]


@dataclass(frozen=True, slots=True)
class ContainerConfig:
    """How the container backend builds and runs its containers."""

    #: the runc binary (a name looked up on PATH, or a path)
    runc: str = "runc"
    #: runc's state folder (``runc --root``); None: runc's default, /run/runc
    runc_root: Path | None = None
    #: the interpreter of the Python runtime (the platform's own by default)
    python: str = sys.executable
    #: the environment every function starts from (the platform's is never passed on)
    env: dict[str, str] = field(
        default_factory=lambda: {**DEFAULT_ENV, "HOME": "/tmp", "TMPDIR": "/tmp"}
    )
    max_frame: int = DEFAULT_MAX_FRAME
    #: the worker's uid and gid in the container (no user namespace: the host's too)
    uid: int = 65534
    gid: int = 65534
    #: where the backend's folder (bundles, code, the shared root) is made (None: temp)
    work_dir: Path | None = None
    #: limits of a prepared container, before a function's own are set at load
    pool_memory_mb: int = 128
    pool_cpu: float = 1.0
    #: processes and threads a function may start beyond the worker's own
    tasks: int = 8
    open_files: int = 256
    #: size of the container's /tmp (tmpfs, charged to its memory limit)
    tmp_mb: int = 64
    prepare_timeout_s: float = 5.0
    load_timeout_s: float = 10.0


@dataclass(slots=True)
class ContainerHandle(WorkerHandle):
    """A container as its sandbox holds it: the worker's socket, a pidfd of its init."""

    container_id: str = ""
    bundle: Path = Path()
    code_folder: Path = Path()
    cgroup: ContainerCgroup | None = None
    status_fd: int = -1


class ContainerBackend(SandboxBackend):
    """Python functions in runc containers, one OCI bundle per sandbox."""

    name: ClassVar[str] = "container"

    def __init__(self, config: ContainerConfig | None = None) -> None:
        self.config = config or ContainerConfig()
        self._work: Path | None = None
        self._root: RuntimeRoot | None = None
        self._runc: str | None = None
        self.cgroup_parent = f"/nfaas-{secrets.token_hex(4)}"
        self._containers: dict[str, ContainerHandle] = {}
        self._sandboxes: set[ContainerSandbox] = set()
        self._closed = False

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        return _runc_usable(ContainerConfig().runc)

    async def start(self) -> None:
        if self._work is not None:
            return
        usable, why = _runc_usable(self.config.runc)
        if not usable:
            raise BackendUnavailable(why)
        if not os.access(self.config.python, os.X_OK):
            raise BackendUnavailable(f"the runtime's interpreter {self.config.python} is missing")
        self._runc = shutil.which(self.config.runc)
        work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=self.config.work_dir))
        work.chmod(0o711)
        (work / "owner.pid").write_text(str(os.getpid()))
        (work / "bundles").mkdir(mode=0o700)
        self._root = RuntimeRoot(work / "rootfs", runtime_paths(self.config.python))
        self._work = work
        await self._sweep_stopped()

    async def _sweep_stopped(self) -> None:
        """Delete the stopped containers a platform that died left behind.

        Their workers ended when the platform's ends of their sockets closed, so
        each is stopped, but runc keeps its state and its cgroups until deleted.
        A stopped container of a live backend is only deleted a little early.
        """
        listing = await asyncio.create_subprocess_exec(
            *self._runc_command("list", "--format", "json"),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        out, _ = await listing.communicate()
        try:
            containers = json.loads(out or b"null") or []
        except ValueError:
            return
        for container in containers:
            container_id = str(container.get("id", ""))
            if container_id.startswith(CONTAINER_PREFIX) and container.get("status") == "stopped":
                logger.info("deleting %s, stopped and left by a platform that died", container_id)
                await _spawn(self._runc_command("delete", container_id), {})
        # Then the empty cgroup folders (rmdir fails on any in use) and the work folders
        # of backends whose platform is gone.
        remove_parent_cgroups(f"/{CONTAINER_PREFIX}*")
        parent = Path(self.config.work_dir or tempfile.gettempdir())
        for folder in parent.glob(f"{WORK_PREFIX}*"):
            try:
                owner = int((folder / "owner.pid").read_text())
            except (OSError, ValueError):
                continue
            if owner != os.getpid() and not Path(f"/proc/{owner}").exists():
                await asyncio.to_thread(shutil.rmtree, folder, True)

    def create(self) -> Sandbox:
        sandbox = ContainerSandbox(self)
        self._sandboxes.add(sandbox)
        return sandbox

    def scratch_named(self, name: object) -> None:
        """A container's scratch is its own /tmp, gone with it: nothing for the host to remove."""
        return None

    def forget(self, sandbox: ProcessSandbox) -> None:
        if isinstance(sandbox, ContainerSandbox):
            self._sandboxes.discard(sandbox)

    def _runc_command(self, *args: str) -> list[str]:
        assert self._runc is not None
        root = ["--root", str(self.config.runc_root)] if self.config.runc_root else []
        return [self._runc, *root, *args]

    async def fork(self) -> ContainerHandle:
        """Start one container (``runc run --detach``) whose worker is ready to say ``ready``."""
        if self._closed or self._work is None or self._root is None:
            raise SandboxStartError("the container backend is not started, or closed")
        config = self.config
        container_id = f"{CONTAINER_PREFIX}{secrets.token_hex(6)}"
        bundle = self._work / "bundles" / container_id
        code_folder = bundle / "code"
        code_folder.mkdir(parents=True, mode=0o755)
        code_folder.chmod(0o755)
        cgroup = ContainerCgroup(f"{self.cgroup_parent}/{container_id}")
        spec = BundleSpec(
            args=[
                *(config.python, *INTERPRETER_FLAGS, "-m", "nfaas.sandboxes.container_init"),
                *("--max-frame", str(config.max_frame)),
            ],
            env={**config.env, "PYTHONPATH": ":".join(import_paths())},
            uid=config.uid,
            gid=config.gid,
            cgroups_path=cgroup.path,
            memory_mb=config.pool_memory_mb,
            cpu=config.pool_cpu,
            pids=WORKER_TASKS + config.tasks,
            open_files=config.open_files,
            tmp_mb=config.tmp_mb,
        )
        (bundle / "config.json").write_text(
            json.dumps(bundle_config(self._root, code_folder, spec))
        )
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        status_r, status_w = os.pipe()
        handle = ContainerHandle(
            -1, ours, -1, asyncio.get_running_loop().create_future(),
            container_id=container_id, bundle=bundle, code_folder=code_folder, cgroup=cgroup,
            status_fd=status_r,
        )  # fmt: skip
        self._containers[container_id] = handle
        try:
            pid_file = bundle / "init.pid"
            run = ["run", "--detach", "--preserve-fds", "2", "--pid-file", str(pid_file)]
            status = await _spawn(
                self._runc_command(
                    *("--log", str(bundle / "runc.log"), *run),
                    *("--bundle", str(bundle), container_id),
                ),
                {SOCKET_FD: theirs.fileno(), STATUS_FD: status_w},
            )
            if status != 0:
                raise SandboxStartError(
                    f"runc could not start container {container_id} (status {status}): "
                    f"{_log_tail(bundle / 'runc.log')}"
                )
            handle.pid = int(pid_file.read_text())
            handle.pidfd = os.pidfd_open(handle.pid)
        except BaseException:
            ours.close()  # no sandbox will ever hold it
            await self.destroy(handle)
            raise
        finally:
            theirs.close()
            os.close(status_w)
        _watch_status(handle)
        return handle

    async def destroy(self, handle: ContainerHandle) -> None:
        """Kill, delete and forget one container; idempotent, finishes even when cancelled."""
        if self._containers.pop(handle.container_id, None) is None:
            return
        await asyncio.shield(self._destroy(handle))

    async def _destroy(self, handle: ContainerHandle) -> None:
        handle.kill()
        handle.release()
        _stop_watching(handle)
        # Also when runc run failed: it may have left a created container behind.
        delete = self._runc_command("delete", "--force", handle.container_id)
        if await _spawn(delete, {}) != 0 and handle.pid > 0:
            logger.warning("runc delete %s failed", handle.container_id)
        await asyncio.to_thread(shutil.rmtree, handle.bundle, True)

    async def aclose(self) -> None:
        """Close every sandbox, delete every container left, remove the backend's folders."""
        self._closed = True
        for sandbox in list(self._sandboxes):
            await sandbox.aclose()
        for handle in list(self._containers.values()):
            await self.destroy(handle)
        work, self._work = self._work, None
        if work is not None:
            await asyncio.to_thread(shutil.rmtree, work, True)
            remove_parent_cgroups(self.cgroup_parent)


class ContainerSandbox(ProcessSandbox):
    """A process-backend sandbox whose worker lives in a container of its own."""

    backend: ClassVar[str] = "container"

    def __init__(self, owner: ContainerBackend) -> None:
        # ProcessSandbox asks its owner only for config (max_frame, env, timeouts),
        # fork(), scratch_named() and forget(), which ContainerBackend provides.
        super().__init__(owner)  # type: ignore[arg-type]
        self._backend = owner
        #: the container, from prepare until aclose has deleted it
        self.container: ContainerHandle | None = None

    async def prepare(self) -> None:
        try:
            await super().prepare()
        finally:
            if isinstance(self.worker, ContainerHandle):
                self.container = self.worker
            if self._state() is SandboxState.CLOSED:  # closed while it was starting
                await self.aclose()

    def _release(self) -> None:
        if isinstance(self.worker, ContainerHandle):  # kept, for aclose to delete it
            self.container = self.worker
        super()._release()

    async def load(self, code: FunctionCode) -> None:
        if self.state is not SandboxState.PREPARED or self.container is None:
            raise SandboxStartError(f"cannot load into a sandbox in state {self.state.value}")
        container, limits = self.container, code.limits
        assert container.cgroup is not None
        try:
            await asyncio.to_thread(stage_code, code.path, container.code_folder)
            tasks = WORKER_TASKS + self._backend.config.tasks + limits.concurrency
            container.cgroup.set_limits(limits.memory_mb, limits.cpu, tasks)
        except OSError as exc:
            self._break(f"load failed: {exc!r}")
            raise SandboxStartError(f"{code.ref}: cannot set up its container: {exc}") from exc
        # The worker's pid as the host sees it (the CPU budget reads its /proc entry).
        workers = [p for p in container.cgroup.pids_in() if p != container.pid]
        if workers:
            container.pid = min(workers)
        await super().load(code)

    def _send_load(self, message: Message, code: FunctionCode) -> None:
        """The load frame, naming the code at /code; no fd crosses into the container."""
        assert self._writer is not None
        self._writer.write(pack_frame({**message, "path": CODE_MOUNT}, self._max_frame))

    def _death(self, status: int | None) -> FunctionFailure:
        container = self.container
        if container is not None and container.cgroup is not None and self._code is not None:
            if container.cgroup.oom_kills() > 0:
                limit = self._code.limits.memory_mb
                self._failure = f"killed by the kernel's OOM killer over its {limit} MB limit"
                return FunctionOutOfMemory(
                    f"{self._code.ref}: over its {limit} MB memory limit (the container's "
                    "cgroup OOM killer ended the worker)"
                )
        return super()._death(status)

    async def stats(self) -> SandboxStats:
        container = self.container
        if container is None or container.cgroup is None or self.state is SandboxState.CLOSED:
            return SandboxStats()
        cgroup = container.cgroup
        return SandboxStats(rss_bytes=cgroup.memory_bytes(), cpu_seconds=cgroup.cpu_seconds())

    async def aclose(self) -> None:
        await super().aclose()
        container, self.container = self.container, None
        if container is not None:
            await self._backend.destroy(container)


# -- runc and its processes ----------------------------------------------------------


def _runc_usable(runc: str) -> tuple[bool, str]:
    if not sys.platform.startswith("linux"):
        return False, "needs Linux"
    found = shutil.which(runc)
    if found is None:
        return False, (
            f"{runc!r} is not installed or not on PATH: install the Debian package "
            f"{DEBIAN_PACKAGE!r} (apt-get install {DEBIAN_PACKAGE})"
        )
    if os.geteuid() != 0:
        return False, "runc needs root here (rootless containers are not set up)"
    if not (Path("/sys/fs/cgroup/memory").is_dir() and Path("/sys/fs/cgroup/pids").is_dir()):
        return False, "needs the cgroup v1 memory and pids controllers at /sys/fs/cgroup"
    try:
        subprocess.run([found, "--version"], capture_output=True, check=True, timeout=5)
    except (OSError, subprocess.SubprocessError) as exc:
        return (
            False,
            f"{found} does not run ({exc}); reinstall the Debian package {DEBIAN_PACKAGE!r}",
        )
    return True, "available"


async def _spawn(argv: list[str], fds: dict[int, int]) -> int:
    """Run ``argv`` with ``fds`` (child fd -> our fd) and wait for its exit status.

    posix_spawn places the fds where runc expects them (3, 4): no preexec_fn,
    which is unsafe in a threaded platform.
    """
    high = {target: os.dup(fd) for target, fd in fds.items()}  # out of 0-4's way
    stderr = sys.__stderr__.fileno() if sys.__stderr__ else 2
    actions: list[tuple[Any, ...]] = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, stderr, 1),
        (os.POSIX_SPAWN_DUP2, stderr, 2),
        *((os.POSIX_SPAWN_DUP2, fd, target) for target, fd in high.items()),
    ]
    try:
        # posix_spawn returns once the child has exec'd (vfork): it does not wait for runc
        pid = os.posix_spawn(  # noqa: ASYNC221
            argv[0], argv, {"PATH": DEFAULT_ENV["PATH"]}, file_actions=actions
        )
    finally:
        for fd in high.values():
            os.close(fd)
    waiter = asyncio.ensure_future(asyncio.to_thread(os.waitpid, pid, 0))
    try:
        _, status = await asyncio.shield(waiter)
    except asyncio.CancelledError:
        # A cancelled prepare lets runc finish first, so that what it made can be deleted.
        await waiter
        raise
    return os.waitstatus_to_exitcode(status)


def _watch_status(handle: ContainerHandle) -> None:
    """Settle ``handle.exited`` with the status the container's init writes when the worker ends.

    The pipe closing without a status means the init itself was killed (a timeout,
    an OOM kill of the whole container): reported as SIGKILL.
    """
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            data = os.read(handle.status_fd, STATUS.size)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not handle.exited.done():
            status = STATUS.unpack(data)[0] if len(data) == STATUS.size else -signal.SIGKILL
            handle.exited.set_result(status)
        _stop_watching(handle)

    os.set_blocking(handle.status_fd, False)
    loop.add_reader(handle.status_fd, readable)


def _stop_watching(handle: ContainerHandle) -> None:
    if handle.status_fd < 0:
        return
    with contextlib.suppress(RuntimeError):
        asyncio.get_running_loop().remove_reader(handle.status_fd)
    os.close(handle.status_fd)
    handle.status_fd = -1
    if not handle.exited.done():
        handle.exited.set_result(-signal.SIGKILL)


def _log_tail(log: Path, chars: int = 600) -> str:
    try:
        text = log.read_text().strip()
    except OSError:
        return "(no runc log)"
    return text[-chars:] or "(empty runc log)"
