"""The process backend: Python functions in processes forked from a warm zygote.

One backend runs one zygote (``nfaas.sandboxes.zygote``, driven through
``zygote_client.ZygoteClient``): a runtime that has already imported the
worker, and forks a child, in new IPC and UTS namespaces when running as root,
for each ``prepare``. Each sandbox (``process_sandbox.ProcessSandbox``) then
drives its child over the worker protocol. A zygote that dies is replaced on
the next prepare, and the workers it leaves live on.

When the platform runs as root, every worker is confined before it runs
anything (``nfaas.sandboxes.confinement``): a uid and gid of its own, no
capabilities, no_new_privs, not dumpable, rlimits it cannot raise. It then
cannot read what only root may (the operator token, the state database), write
outside its scratch folder and world-writable places, signal or trace the
platform, the zygote or another worker, or fork without bound. The catalog
keeps the folder above each code folder root-only, so that ``..`` from the
code folder's fd leads nowhere. When the platform does not run as root,
nothing of this applies: workers run as the platform's own user, as before.

Every instance gets a scratch folder of its own (its working folder, TMPDIR and
HOME), made by the zygote's child before it is handed out, in a folder this
backend makes with its first zygote and removes at ``aclose``. The
per-invocation CPU budget is enforced from outside (``cpu_budget.CpuBudget``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from nfaas.errors import BackendUnavailable, SandboxError, SandboxStartError
from nfaas.sandboxes.base import Sandbox, SandboxBackend
from nfaas.sandboxes.confinement import Confinement, remove_scratch, uid_conflicts
from nfaas.sandboxes.process_sandbox import ProcessSandbox
from nfaas.sandboxes.protocol import DEFAULT_MAX_FRAME
from nfaas.sandboxes.zygote_client import WorkerHandle, ZygoteClient, describe_exit

#: ProcessSandbox is named from here too (the backend and its sandbox, one import)
__all__ = ["DEFAULT_ENV", "ProcessBackend", "ProcessConfig", "ProcessSandbox"]

logger = logging.getLogger(__name__)

#: what every function's environment starts from; the descriptor's variables go on top
DEFAULT_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


@dataclass(frozen=True, slots=True)
class ProcessConfig:
    """How the process backend runs its zygote and workers."""

    #: the interpreter of the Python runtime (the platform's own by default)
    python: str = sys.executable
    #: the environment every function starts from (the platform's is never passed on)
    env: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ENV))
    max_frame: int = DEFAULT_MAX_FRAME
    #: new IPC and UTS namespaces per child, when running as root
    namespaces: bool = True
    #: what each worker becomes when the platform runs as root (its own uid, rlimits)
    confinement: Confinement = field(default_factory=Confinement)
    #: where the folder of instances' scratch folders is made (None: the system's temp folder)
    scratch_dir: Path | None = None
    #: children the zygote keeps forked ahead, so that a prepare rarely waits for a fork
    spares: int = 1
    zygote_start_timeout_s: float = 10.0
    prepare_timeout_s: float = 5.0
    load_timeout_s: float = 10.0


class ProcessBackend(SandboxBackend):
    """Python functions in forked processes, one zygote per backend.

    Run by root, it confines every worker (``confinement.Confinement``): its own
    unprivileged uid, no capabilities, hard rlimits, no way back. Run by any other
    user, it does not: workers run as that user, as able to read its files and
    signal its processes as the platform itself, so an unprivileged platform is
    for development and single-tenant nodes only.
    """

    name: ClassVar[str] = "process"

    def __init__(self, config: ProcessConfig | None = None) -> None:
        self.config = config or ProcessConfig()
        self._zygote: ZygoteClient | None = None
        self._zygote_lock = asyncio.Lock()
        self._sandboxes: set[ProcessSandbox] = set()
        self._closed = False
        #: the folder of the instances' scratch folders, made with the first zygote
        self._scratch: Path | None = None
        #: whether workers are confined: the platform runs as root
        self.confined = os.geteuid() == 0

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        if not sys.platform.startswith("linux"):
            return False, "needs Linux (fork, pidfds, SCM_RIGHTS)"
        try:
            os.close(os.pidfd_open(os.getpid()))
        except (AttributeError, OSError) as exc:
            return False, f"no pidfd support (Linux 5.3 or later): {exc}"
        return True, "available"

    @property
    def zygote_pid(self) -> int | None:
        return self._zygote.process.pid if self._zygote is not None else None

    async def start(self) -> None:
        async with self._zygote_lock:
            if self._zygote is None:
                self._zygote = await self._start_zygote()

    async def _start_zygote(self) -> ZygoteClient:
        config = self.config
        if self._scratch is None:  # the first zygote
            uids = config.confinement.uids
            if self.confined and (conflicts := uid_conflicts(uids)):
                raise BackendUnavailable(
                    f"the worker uids {uids.start}-{uids.stop - 1} are not the workers' "
                    f"alone: {', '.join(conflicts)}; give ProcessConfig.confinement others"
                )
            self._scratch = Path(tempfile.mkdtemp(prefix="nfaas-scratch-", dir=config.scratch_dir))
            self._scratch.chmod(0o711)  # workers enter their own folder, list none
        return await ZygoteClient.start(
            python=config.python,
            env=config.env,
            max_frame=config.max_frame,
            spares=config.spares,
            namespaces=config.namespaces,
            timeout_s=config.zygote_start_timeout_s,
            confinement=config.confinement if self.confined else None,
            scratch=str(self._scratch),
            # A replaced zygote's workers live on: the new one must not reuse their uids.
            busy_uids={
                sandbox.worker.uid
                for sandbox in self._sandboxes
                if sandbox.worker is not None and sandbox.worker.uid is not None
            },
        )

    def scratch_named(self, name: object) -> Path:
        """The scratch folder a new worker says the zygote made for it, if it is one."""
        folder = Path(name) if isinstance(name, str) else None
        if folder is None or folder.parent != self._scratch or not folder.name.isalnum():
            raise SandboxError(f"protocol violation: {name!r} is not a scratch folder")
        return folder

    def create(self) -> Sandbox:
        sandbox = ProcessSandbox(self)
        self._sandboxes.add(sandbox)
        return sandbox

    async def fork(self) -> WorkerHandle:
        """A fresh child of the zygote, restarting the zygote first if it has died."""
        zygote = await self._live_zygote()
        try:
            return await zygote.fork()
        except SandboxStartError:
            if zygote.alive:
                raise
        # It died under this very request: once more, with a new one.
        return await (await self._live_zygote()).fork()

    async def _live_zygote(self) -> ZygoteClient:
        if self._closed:
            raise SandboxStartError("the process backend is closed")
        async with self._zygote_lock:
            zygote = self._zygote
            if zygote is None or not zygote.alive:
                if zygote is not None:
                    await zygote.aclose()
                    logger.warning(
                        "the zygote (pid %d) %s; starting a new one",
                        zygote.process.pid,
                        describe_exit(zygote.process.returncode),
                    )
                zygote = self._zygote = await self._start_zygote()
            return zygote

    def forget(self, sandbox: ProcessSandbox) -> None:
        self._sandboxes.discard(sandbox)

    async def aclose(self) -> None:
        """Kill every sandbox's worker, then stop the zygote (which reaps them)."""
        self._closed = True
        sandboxes = list(self._sandboxes)
        for sandbox in sandboxes:
            sandbox._release()
        zygote, self._zygote = self._zygote, None
        try:
            if zygote is not None:
                await zygote.aclose()
        finally:
            await asyncio.gather(*(sandbox.aclose() for sandbox in sandboxes))
            scratch, self._scratch = self._scratch, None
            if scratch is not None:
                remove_scratch(scratch)
