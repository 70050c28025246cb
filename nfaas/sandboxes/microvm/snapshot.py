"""Snapshots of a booted, runtime-loaded guest: made once per runtime image, restored per instance.

A template VM boots the image with its RAM in a file mapped shared. When the
agent says ``booted`` (Python started, the worker's paths rehearsed, blocked on
its port), QEMU migrates the VM with ``x-ignore-shared`` into ``state``: the
device state only, some 60 kB, since the RAM is already the file. The
template is then killed and the file is the snapshot's memory. Restoring is
starting QEMU with the same machine, the file mapped private, and ``state``
as the incoming migration (``nfaas.sandboxes.microvm.backend``).

A snapshot is kept per key: a hash of everything that must match for a
restore to be sound (the image's artefacts, the agent layer, QEMU's version
and the machine's command line, accelerator, memory and boot parameters
included). Making one removes those no backend has started with for a day. Snapshots live in a
machine-wide folder, made under a lock so two platforms starting together
boot one template, and published by renaming a finished folder into place.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from qemu.qmp import QMPClient

from nfaas.errors import SandboxError, SandboxStartError
from nfaas.sandboxes.microvm.qemu import MachineSpec, Vm, connect_unix, launch, qmp_session
from nfaas.sandboxes.protocol import DEFAULT_MAX_FRAME, read_message

logger = logging.getLogger(__name__)

#: bumped when what a snapshot holds changes in a way its key cannot see
SNAPSHOT_FORMAT = 2
#: a snapshot no backend started with for this long is removed when another is made
UNUSED_S = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Snapshot:
    folder: Path
    spec: MachineSpec
    #: seconds the template took from QEMU's start to the agent's ``booted``
    boot_s: float

    @property
    def ram(self) -> Path:
        return self.folder / "ram"

    @property
    def state(self) -> Path:
        return self.folder / "state"


def snapshot_key(spec: MachineSpec, image_digest: str, agent_digest: str, qemu: str) -> str:
    # The restore's command line with placeholder paths: a change to the machine's
    # devices or options must not restore an old snapshot into a different machine.
    machine = spec.argv("restore", channel=Path("C"), qmp=Path("Q"), ram=Path("R"))
    material = {
        "format": SNAPSHOT_FORMAT,
        "machine": machine[1:],
        "image": image_digest,
        "agent": agent_digest,
        "qemu": qemu,
        "accelerator": spec.accelerator.name,
        "cpu": spec.accelerator.cpu,
        "memory_mb": spec.memory_mb,
        "vcpus": spec.vcpus,
        "cmdline": spec.cmdline,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:24]


async def ensure_snapshot(
    root: Path, key: str, spec: MachineSpec, initrd_source: Path, boot_timeout_s: float
) -> Snapshot:
    """The snapshot of ``key`` under ``root``, booting its template first if there is none."""
    root.mkdir(parents=True, exist_ok=True)
    folder = root / key
    if (folder / "meta.json").exists():
        return _load(folder, spec)
    lock_fd = os.open(root / f".{key}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        await asyncio.to_thread(fcntl.flock, lock_fd, fcntl.LOCK_EX)
        if (folder / "meta.json").exists():  # made by another platform while this one waited
            return _load(folder, spec)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
        try:
            shutil.copyfile(initrd_source, staging / "initrd")
            boot_s = await _make(staging, spec, boot_timeout_s)
            (staging / "meta.json").write_text(
                json.dumps({"key": key, "boot_s": boot_s, "made_at": time.time(),
                            "spec": {k: str(v) for k, v in asdict(spec).items()}}, indent=2)
            )  # fmt: skip
            os.rename(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        remove_unused(root, keep=key)
    finally:
        os.close(lock_fd)
    return _load(folder, spec)


def remove_unused(root: Path, keep: str, unused_s: float = UNUSED_S) -> list[str]:
    """Remove the snapshots (and staging folders) no backend started with for ``unused_s``.

    Every start touches its snapshot's ``meta.json``; a platform of an older nfaas
    still running restores from its own, so only long-unused ones go. VMs restored
    from a removed snapshot keep its RAM file mapped until they end.
    """
    removed: list[str] = []
    deadline = time.time() - unused_s
    for folder in root.iterdir():
        if not folder.is_dir() or folder.name == keep:
            continue
        marker = folder / "meta.json"
        try:
            last_used = (marker if marker.exists() else folder).stat().st_mtime
        except OSError:
            continue
        if last_used < deadline:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed


def _load(folder: Path, spec: MachineSpec) -> Snapshot:
    meta = json.loads((folder / "meta.json").read_text())
    with contextlib.suppress(OSError):
        os.utime(folder / "meta.json")  # in use: remove_unused leaves it
    restored = MachineSpec(
        spec.binary, spec.accelerator, spec.kernel, folder / "initrd", spec.cmdline,
        spec.memory_mb, spec.vcpus,
    )  # fmt: skip
    return Snapshot(folder, restored, float(meta["boot_s"]))


async def _make(staging: Path, spec: MachineSpec, timeout_s: float) -> float:
    """Boot a template in ``staging`` and migrate it to ``state``; returns its boot time."""
    template = MachineSpec(
        spec.binary, spec.accelerator, spec.kernel, staging / "initrd", spec.cmdline,
        spec.memory_mb, spec.vcpus,
    )  # fmt: skip
    started = time.monotonic()
    logger.info("booting a microVM template (%s) for a snapshot", spec.accelerator.why)
    # The VM's sockets go in a short path of their own (AF_UNIX paths end at 108 bytes).
    sockets = Path(tempfile.mkdtemp(prefix="nfaas-template-"))
    vm = await launch(template, sockets, "template", ram=staging / "ram")
    channel: asyncio.StreamWriter | None = None
    try:
        # The channel stays open while the template is snapshotted: every restored VM
        # is connected to its host as the template was (a guest whose host left reads EOF).
        boot_s, channel = await _wait_booted(vm, timeout_s, started)
        qmp = await qmp_session(vm, timeout_s)
        try:
            await qmp.execute(
                "migrate-set-capabilities",
                {"capabilities": [{"capability": "x-ignore-shared", "state": True}]},
            )
            await qmp.execute("migrate", {"uri": f"exec:cat > {staging / 'state'}"})
            await _wait_migrated(qmp, vm, timeout_s)
        finally:
            with contextlib.suppress(Exception):
                await qmp.disconnect()
    finally:
        if channel is not None:
            channel.close()
        vm.kill()
        assert vm.ended is not None
        await asyncio.shield(vm.ended)
        vm.close_pidfd()
        shutil.rmtree(sockets, ignore_errors=True)
    logger.info("microVM template booted in %.2f s, snapshot taken", boot_s)
    return boot_s


async def _wait_booted(
    vm: Vm, timeout_s: float, started: float
) -> tuple[float, asyncio.StreamWriter]:
    """The template's worker says ``ready``, rehearses, then the agent says ``booted``."""
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await connect_unix(vm.channel, vm, timeout_s)
            for expected in ("ready", "booted"):
                message = await _next_message(reader, vm)
                if message is None or message.get("op") != expected:
                    raise SandboxStartError(
                        f"the microVM guest agent said {message!r} instead of {expected!r}: "
                        f"{vm.describe_failure()}"
                    )
    except TimeoutError as exc:
        raise SandboxStartError(
            f"the microVM guest was not ready within {timeout_s:g} s: {vm.describe_failure()}"
        ) from exc
    except SandboxError as exc:
        if isinstance(exc, SandboxStartError):
            raise
        raise SandboxStartError(f"the microVM guest agent answered garbage: {exc.detail}") from exc
    return time.monotonic() - started, writer


async def _next_message(reader: asyncio.StreamReader, vm: Vm) -> dict[str, Any] | None:
    """The next frame from the guest, unless QEMU ends first."""
    assert vm.ended is not None
    reading = asyncio.ensure_future(read_message(reader, DEFAULT_MAX_FRAME))
    waits: set[asyncio.Future[Any]] = {reading, vm.ended}
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    if not reading.done():
        reading.cancel()
        raise SandboxStartError(f"the microVM guest ended while booting: {vm.describe_failure()}")
    return reading.result()


async def _wait_migrated(qmp: QMPClient, vm: Vm, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            status = await qmp.execute("query-migrate")
            state = status.get("status") if isinstance(status, dict) else None
            if state == "completed":
                return
            if state in ("failed", "cancelled"):
                raise SandboxStartError(f"snapshotting the template failed: {status}")
            await asyncio.sleep(0.005)
