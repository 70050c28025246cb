"""mosquitto in a runc container built by the container backend's bundle code.

The bundle is ``container_bundle.bundle_config``'s, unchanged but for two
things: the process is mosquitto reading its configuration from ``/code``, and
the container keeps the host's network namespace. The backend's containers get
a network namespace holding only ``lo``, where nothing outside can reach a
server. Of the two ways to make the broker reachable, a veth pair into the
container's namespace or the host's namespace, this form takes the host's:
the broker binds 127.0.0.1 only, as the process form does, so both forms are
measured over the same loopback path and the difference between them is what
the container adds (namespaces, cgroups, runc), not a veth hop and a bridge.
It gives up the network isolation of the container (the broker could bind any
host address); the PID, mount, IPC and UTS namespaces, the read-only root, the
unprivileged uid without capabilities and the cgroup limits stay.

CPU time and memory come from the container's cgroup (cpuacct.usage,
memory.usage_in_bytes), the container's own accounting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

from nfaas.errors import ExperimentError
from nfaas.experiments.broker import BrokerHost, Usage, broker_config, mosquitto_binary
from nfaas.experiments.broker import wait_listening as _wait_listening
from nfaas.sandboxes.container import ContainerBackend, ContainerConfig
from nfaas.sandboxes.container_bundle import (
    CODE_MOUNT,
    BundleSpec,
    ContainerCgroup,
    RuntimeRoot,
    bundle_config,
    remove_parent_cgroups,
    runtime_paths,
)

CONTAINER_PREFIX = "nfaas-broker-"
#: a broker VNF's share of the node: one core (mosquitto is single-threaded) and 256 MB
BROKER_CPU = 1.0
BROKER_MEMORY_MB = 256
BROKER_TASKS = 16


def host_network(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the host's network namespace instead of a new one (see the module)."""
    linux = config["linux"]
    linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "network"]
    return config


class ContainerBroker(BrokerHost):
    """mosquitto as a runc container's only process."""

    form: ClassVar[str] = "container"

    def __init__(self, cpu: float = BROKER_CPU) -> None:
        super().__init__()
        self.cpu = cpu
        self.config = ContainerConfig()
        self.container_id = f"{CONTAINER_PREFIX}{secrets.token_hex(5)}"
        self.cgroup_parent = f"/{CONTAINER_PREFIX}{secrets.token_hex(4)}"
        self.cgroup = ContainerCgroup(f"{self.cgroup_parent}/{self.container_id}")
        self._started = False

    def _runc(self, *args: str) -> list[str]:
        runc = shutil.which(self.config.runc) or self.config.runc
        root = ["--root", str(self.config.runc_root)] if self.config.runc_root else []
        return [runc, *root, *args]

    def _bundle(self) -> Path:
        bundle = self.work / "bundle"
        bundle.mkdir(mode=0o700)
        conf = self.work / "conf"
        conf.mkdir(mode=0o755)
        (conf / "mosquitto.conf").write_text(broker_config(self.port))
        (conf / "mosquitto.conf").chmod(0o644)
        root = RuntimeRoot(self.work / "rootfs", runtime_paths(sys.executable))
        spec = BundleSpec(
            args=[mosquitto_binary(), "-c", f"{CODE_MOUNT}/mosquitto.conf"],
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            uid=self.config.uid, gid=self.config.gid, cgroups_path=self.cgroup.path,
            memory_mb=BROKER_MEMORY_MB, cpu=self.cpu, pids=BROKER_TASKS,
            open_files=self.config.open_files, tmp_mb=16,
        )  # fmt: skip
        config = host_network(bundle_config(root, conf, spec))
        (bundle / "config.json").write_text(json.dumps(config))
        return bundle

    async def start(self) -> None:
        usable, why = ContainerBackend.availability()
        if not usable:
            raise ExperimentError(f"the container form is unavailable: {why}")
        bundle = self._bundle()
        self._started = True  # from here on, _stop deletes whatever runc made
        run = self._runc("run", "--detach", "--bundle", str(bundle), self.container_id)
        with open(self.log, "wb") as log:  # noqa: ASYNC230 (a local file, opened once)
            done = await asyncio.create_subprocess_exec(
                *run, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
            status = await done.wait()
        if status != 0:
            raise ExperimentError(f"runc could not start the broker ({status}): {self.log_tail()}")
        try:
            await _wait_listening(self.port, lambda: bool(self.cgroup.pids_in()))
        except ExperimentError as exc:
            raise ExperimentError(f"{exc.detail}: {self.log_tail()}") from exc

    def usage(self) -> Usage:
        return Usage(self.cgroup.cpu_seconds(), self.cgroup.memory_bytes())

    async def _stop(self) -> None:
        if not self._started:
            return
        self._started = False
        delete = await asyncio.create_subprocess_exec(
            *self._runc("delete", "--force", self.container_id),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(delete.wait(), 30)
        remove_parent_cgroups(self.cgroup_parent)
