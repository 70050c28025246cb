"""The broker VNF of experiment 2: mosquitto hosted in a sandbox form that can hold a server.

``BrokerHost`` is the contract: start mosquitto on a loopback port, report the
CPU time and memory the sandbox's own accounting gives, and remove everything
at ``aclose`` (idempotent, also after a failed start). ``ProcessBroker``
confines mosquitto as the process backend confines a worker
(``confined_exec``): its own uid, hard rlimits, IPC and UTS namespaces; its CPU
and memory come from ``/proc``. ``ContainerBroker`` (``broker_container``) runs
it in a runc container built by the container backend's bundle code; its CPU
and memory come from the container's cgroup.

The microVM and Wasm forms cannot host it here: the guest has no network
device, and a Wasm module has no sockets (``UNHOSTABLE``).
"""

from __future__ import annotations

import asyncio
import enum
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from nfaas.errors import ExperimentError
from nfaas.sandboxes.confinement import Confinement, uid_conflicts

HOST = "127.0.0.1"
DEBIAN_PACKAGE = "mosquitto"
#: outside the process backend's worker uids, so that no worker shares the broker's
BROKER_UID = Confinement().uids.stop + 1000
READY_TIMEOUT_S = 5.0
#: why these forms cannot host a server on this machine and build
UNHOSTABLE = {
    "microvm": "the QEMU microVM guest has no network device (only a virtio-serial port to "
    "the host), so nothing outside the VM can reach a server in it",
    "wasm": "a Wasm function has no sockets (the nfaas Wasm ABI grants no WASI sockets), so "
    "it cannot listen for MQTT connections",
}


class BrokerState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Usage:
    """CPU time (user + system) and resident memory, from the sandbox's own accounting."""

    cpu_s: float
    memory_bytes: int


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if found is None:
        raise ExperimentError(
            f"mosquitto is not installed: apt-get install {DEBIAN_PACKAGE} (scripts/setup does)"
        )
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def broker_config(port: int) -> str:
    """mosquitto.conf: loopback only, anonymous, nothing kept on disk, PUBACKs sent at once."""
    return (
        f"listener {port} {HOST}\n"
        "allow_anonymous true\n"
        "persistence false\n"
        # without it a 4-byte PUBACK waits for Nagle: about 1.3 ms instead of 0.1 at 800/s
        "set_tcp_nodelay true\n"
        "log_dest stderr\n"
        "log_type error\n"
        "log_type warning\n"
    )


async def wait_listening(
    port: int, alive: Callable[[], bool], timeout_s: float = READY_TIMEOUT_S
) -> None:
    """Until ``HOST:port`` accepts a connection; ``alive()`` false means the broker died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            if not alive():
                raise ExperimentError("mosquitto ended before listening") from None
            await asyncio.sleep(0.02)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise ExperimentError(f"mosquitto did not listen on {HOST}:{port} within {timeout_s:g} s")


class BrokerHost(ABC):
    """mosquitto in one sandbox form; an async context manager."""

    form: ClassVar[str]

    def __init__(self) -> None:
        self.state = BrokerState.NEW
        self.port = free_port()
        self.work = Path(tempfile.mkdtemp(prefix="nfaas-broker-"))
        self.work.chmod(0o755)  # the broker's unprivileged uid reads its config here

    @property
    def log(self) -> Path:
        return self.work / "broker.log"

    def log_tail(self, chars: int = 400) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:].strip()
        except OSError:
            return ""

    @abstractmethod
    async def start(self) -> None:
        """Start mosquitto and wait until it listens."""

    @abstractmethod
    def usage(self) -> Usage:
        """CPU time and memory used so far."""

    @abstractmethod
    async def _stop(self) -> None:
        """Stop mosquitto and release what the form made."""

    async def aclose(self) -> None:
        if self.state is BrokerState.CLOSED:
            return
        self.state = BrokerState.CLOSED
        try:
            await asyncio.shield(self._stop())
        finally:
            shutil.rmtree(self.work, ignore_errors=True)

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.aclose()
            raise
        self.state = BrokerState.RUNNING
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def proc_usage(pid: int) -> Usage:
    """CPU time and RSS of one process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return Usage(0.0, 0)
    ticks = os.sysconf("SC_CLK_TCK")
    return Usage((int(fields[11]) + int(fields[12])) / ticks, pages * os.sysconf("SC_PAGE_SIZE"))


class ProcessBroker(BrokerHost):
    """mosquitto confined as a process-backend worker: own uid, rlimits, IPC/UTS namespaces."""

    form: ClassVar[str] = "process"

    def __init__(self, uid: int = BROKER_UID) -> None:
        super().__init__()
        self.uid = uid
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        clash = uid_conflicts(range(self.uid, self.uid + 1)) if os.geteuid() == 0 else []
        if clash:
            raise ExperimentError(f"the broker's uid {self.uid} belongs to {', '.join(clash)}")
        config = self.work / "mosquitto.conf"
        config.write_text(broker_config(self.port))
        config.chmod(0o644)
        launcher = [sys.executable, "-m", "nfaas.experiments.confined_exec", str(self.uid), "--"]
        with open(self.log, "wb") as log:  # noqa: ASYNC230 (a local file, opened once)
            self.process = await asyncio.create_subprocess_exec(
                *launcher, mosquitto_binary(), "-c", str(config),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
        process = self.process
        try:
            await wait_listening(self.port, lambda: process.returncode is None)
        except ExperimentError as exc:
            raise ExperimentError(f"{exc.detail}: {self.log_tail()}") from exc

    def usage(self) -> Usage:
        if self.process is None:
            return Usage(0.0, 0)
        return proc_usage(self.process.pid)

    async def _stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            process.kill()
            await process.wait()


def make_broker(form: str) -> BrokerHost:
    """A broker host by form name; the unhostable forms raise with the reason."""
    if form == "process":
        return ProcessBroker()
    if form == "container":
        from nfaas.experiments.broker_container import ContainerBroker

        return ContainerBroker()
    raise ExperimentError(f"cannot host the broker in form {form!r}: {UNHOSTABLE.get(form, '?')}")
