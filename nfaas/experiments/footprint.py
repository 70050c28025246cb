"""Experiment 1 (the paper's Fig. 8): each backend's memory while it deploys, and its boot time.

For every backend (process, container, microVM, Wasm) a sandbox is deployed
(``prepare`` + ``load``: EVE025 7.2.3 steps 1-5, what Kata's container boot is
in the paper) with a packet-generator VNF like NetBricks' ``packet-test``. Two
measurements, never mixed:

* boot: ``boot_reps`` deployments with nothing else running; the wall time, and
  the CPU time (user + system) of everything that took part: this process,
  its reaped children (runc), the sandbox's own accounting (the worker, the
  container's cgroup, QEMU), and for the process backend the zygote.
* memory: ``trace_reps`` deployments per scenario ("deploy": the deployment
  alone, "deploy+invoke": followed by one invocation of the VNF) with the
  sandbox's memory sampled every ``sample_interval_s`` (``footprint_probes``)
  until ``hold_s`` after the last step.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

from nfaas.errors import ExperimentError, NfaasError
from nfaas.experiments.footprint_probes import (
    Sampler,
    cpu_now,
    memory_probe,
    proc_cpu_s,
)
from nfaas.experiments.profiles import FootprintProfile
from nfaas.sandboxes.base import Event, FunctionCode, Limits, SandboxBackend

#: the paper's Fig. 8 and section 5.2.1 (Kata containers, NetBricks packet-test)
PAPER = {
    "boot_ms": {"Kata + Firecracker": 71.0, "Kata + QEMU": 83.0},
    "deploy_overhead_mb": {"Kata + Firecracker": 3.0, "Kata + QEMU": 20.0},
    "with_vnf_mb": {"Kata + Firecracker": 31.0, "Kata + QEMU": 41.0},
}
#: time the deleted sandbox's aftermath (reaping, cgroup removal) gets between runs
SETTLE_S = 0.2
MB = 1 << 20

#: NetBricks' packet-test, in Python: a burst of UDP packets with their checksums
PY_VNF = """\
import struct


def handle(event, context):
    packets = []
    for i in range(2000):
        payload = bytes((i + j) & 0xFF for j in range(64))
        header = struct.pack("!HHHH", 1024 + i % 100, 9000, 8 + len(payload), 0)
        words = struct.unpack("!%dH" % ((len(header) + len(payload)) // 2), header + payload)
        packets.append((header, payload, (~sum(words)) & 0xFFFF))
    return str(len(packets)).encode()
"""
#: the same in WebAssembly (nfaas Wasm ABI): 2000 packets of 64 bytes written and summed
WAT_VNF = """\
(module
  (memory (export "memory") 3)
  (func (export "nfaas_alloc") (param $len i32) (result i32) (i32.const 1024))
  (func (export "vnf") (param $ptr i32) (param $len i32) (result i64)
    (local $i i32) (local $sum i32)
    (loop $fill
      (i32.store8 (i32.add (i32.const 65536) (local.get $i)) (local.get $i))
      (local.set $sum (i32.add (local.get $sum)
        (i32.load8_u (i32.add (i32.const 65536) (local.get $i)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $fill (i32.lt_u (local.get $i) (i32.const 128000))))
    (i32.store (i32.const 1024) (local.get $sum))
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 4))))
"""


@contextlib.asynccontextmanager
async def open_backend(name: str, cold_microvm: bool = False) -> AsyncIterator[SandboxBackend]:
    from nfaas.sandboxes.registry import backend_class

    if cold_microvm:
        from nfaas.sandboxes.microvm.backend import MicrovmBackend, MicrovmConfig

        backend: SandboxBackend = MicrovmBackend(MicrovmConfig(snapshots=False))
    else:
        backend = backend_class(name)()
    async with backend:
        yield backend


async def vnf_code(name: str, backend: SandboxBackend, folder: Path) -> FunctionCode:
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)  # a confined worker reads it as another uid
    limits = Limits(memory_mb=128, cpu=1.0, timeout_s=60)
    if name != "wasm":
        (folder / "vnf.py").write_text(PY_VNF)
        (folder / "vnf.py").chmod(0o644)
        return FunctionCode("experiments", "packet-test", "1", "vnf:handle", folder, limits)
    (folder / "vnf.wat").write_text(WAT_VNF)
    code = FunctionCode("experiments", "packet-test", "1", "vnf", folder / "vnf.wat", limits)
    compiled = await backend.compile(code, folder / "compiled")
    return FunctionCode(
        code.app, code.name, code.version, code.handler, code.path, limits, compiled_path=compiled
    )


def _extra_cpu_s(name: str, backend: SandboxBackend) -> float:
    """CPU the deployment costs outside this process and its reaped children, so far."""
    if name == "process":
        return proc_cpu_s(getattr(backend, "zygote_pid", None))
    return 0.0


async def deploy_once(name: str, backend: SandboxBackend, code: FunctionCode) -> dict[str, float]:
    """One deployment and one invocation; wall and CPU of the deployment, ms."""
    sandbox = backend.create()
    try:
        cpu0, extra0 = cpu_now(), _extra_cpu_s(name, backend)
        t0 = time.monotonic()
        await sandbox.prepare()
        await sandbox.load(code)
        wall = time.monotonic() - t0
        own = (await sandbox.stats()).cpu_seconds if name != "wasm" else 0.0
        cpu = cpu_now() - cpu0 + _extra_cpu_s(name, backend) - extra0 + own
        result = await sandbox.invoke(Event("invoke", b"go"))
        first = (result.first_line_at or time.monotonic()) - t0
    finally:
        await sandbox.aclose()
    await asyncio.sleep(SETTLE_S)
    return {"wall_ms": wall * 1e3, "cpu_ms": cpu * 1e3, "first_line_ms": first * 1e3}


async def trace_once(
    name: str, backend: SandboxBackend, code: FunctionCode, invoke: bool, prof: FootprintProfile
) -> dict[str, Any]:
    """Memory samples (s, bytes) of one deployment, and of its invocation if ``invoke``."""
    sandbox = backend.create()
    sampler = Sampler(memory_probe(name, backend, sandbox), prof.sample_interval_s)
    marks: dict[str, float] = {}
    try:
        sampler.start()
        await sandbox.prepare()
        await sandbox.load(code)
        marks["deployed_s"] = time.monotonic() - sampler.t0
        if invoke:
            await sandbox.invoke(Event("invoke", b"go"))
            marks["invoked_s"] = time.monotonic() - sampler.t0
        await asyncio.sleep(prof.hold_s)
    finally:
        samples = sampler.stop()
        await sandbox.aclose()
    await asyncio.sleep(SETTLE_S)
    return {**marks, "samples": samples}


async def measure_backend(name: str, prof: FootprintProfile, folder: Path) -> dict[str, Any]:
    """Boot and memory figures of one backend, or why it cannot run here."""
    from nfaas.sandboxes.registry import backend_class

    usable, why = backend_class(name).availability()
    if not usable:
        return {"unavailable": why}
    reps = prof.microvm_boot_reps if name == "microvm" else prof.boot_reps
    out: dict[str, Any] = {"boots": [], "traces": {"deploy": [], "deploy+invoke": []}}
    async with open_backend(name) as backend:
        code = await vnf_code(name, backend, folder / name)
        await deploy_once(name, backend, code)  # page cache, imports, the first snapshot use
        out["boots"] = [await deploy_once(name, backend, code) for _ in range(reps)]
        for scenario, invoke in (("deploy", False), ("deploy+invoke", True)):
            for _ in range(prof.trace_reps):
                out["traces"][scenario].append(await trace_once(name, backend, code, invoke, prof))
    if name == "microvm" and prof.microvm_cold_boots:
        async with open_backend(name, cold_microvm=True) as backend:
            code = await vnf_code(name, backend, folder / "microvm-cold")
            out["cold_boots"] = [
                await deploy_once(name, backend, code) for _ in range(prof.microvm_cold_boots)
            ]
    return out


async def run_footprint(prof: FootprintProfile) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="nfaas-experiment-") as tmp:
        for name in prof.backends:
            try:
                results[name] = await measure_backend(name, prof, Path(tmp))
            except NfaasError as exc:
                results[name] = {"failed": exc.detail}
    if not any("boots" in r for r in results.values()):
        raise ExperimentError("no backend could be measured on this machine")
    return results


def level_mb(samples: list[tuple[float, int]], after_s: float) -> float:
    """The mean memory (MB) of the samples at or after ``after_s``: the level it settled at."""
    tail = [b for t, b in samples if t >= after_s] or [samples[-1][1]]
    return float(np.mean(tail)) / MB
