"""Resident memory of an idle instance, per backend, beside a bare equivalent.

Process backend: the RSS of each loaded, idle worker (``Sandbox.stats``) and its
PSS (``/proc/PID/smaps_rollup``: a forked worker shares most of its pages with
the zygote, so the PSS is its fair share of the RAM it uses); floor: an idle
child forked from an interpreter as warm as the zygote (``floors/fork.py idle``).

Wasm backend: the instance's linear memory (``Sandbox.stats``), and the growth
of the platform process's RSS per instance over ``INSTANCES`` instances (the
store, the instance, its thread); floor: the same growth for bare wasmtime-py
stores and instances of the same module. Both Wasm figures are taken in fresh
processes (``python -m benchmarks.memory wasm|wasm-floor N``), so that what an
earlier benchmark left in the allocator does not count.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvloop
import wasmtime

from benchmarks.figures import Figure, Section
from benchmarks.floors.fork import proc_memory_kb
from benchmarks.functions import PYTHON_ECHO, WAT_ECHO
from benchmarks.processes import HERE, ZYGOTE_ENV, BenchmarkError, run_json
from benchmarks.stats import median, summarize
from nfaas.sandboxes.base import Event, FunctionCode, Limits, Sandbox

INSTANCES = 20
KIB = 1024
MIB = 1 << 20


def _code(root: Path, backend: str) -> FunctionCode:
    # Workers may run as an unprivileged user: the code must be readable by others,
    # as the catalog's materialised code folders are.
    root.chmod(0o755)
    limits = Limits(memory_mb=64, cpu=0.1, timeout_s=5)
    if backend == "process":
        (root / "handler.py").write_text(PYTHON_ECHO)
        return FunctionCode("bench", "mem", "1.0.0", "handler:handle", root, limits)
    (root / "echo.wat").write_text(WAT_ECHO)
    return FunctionCode("bench", "mem", "1.0.0", "echo", root / "echo.wat", limits)


async def _loaded(backend: Any, code: FunctionCode, count: int) -> list[Sandbox]:
    """``count`` instances, loaded and invoked once, as an instance is after its first event."""
    sandboxes: list[Sandbox] = []
    for _ in range(count):
        sandbox = backend.create()
        sandboxes.append(sandbox)
        await sandbox.prepare()
        await sandbox.load(code)
        await sandbox.invoke(Event("invoke", b"ping"))
    return sandboxes


# -- process backend ---------------------------------------------------------------------------


async def _process_workers(count: int) -> dict[str, Any]:
    from nfaas.sandboxes.process import ProcessBackend

    with tempfile.TemporaryDirectory(prefix="nfaas-bench-") as tmp:
        code = _code(Path(tmp), "process")
        async with ProcessBackend() as backend:
            sandboxes = await _loaded(backend, code, count)
            try:
                await asyncio.sleep(0.2)
                rss = [(await s.stats()).rss_bytes / KIB for s in sandboxes]
                pss = [
                    proc_memory_kb(pid).get("pss", 0)
                    for s in sandboxes
                    if (pid := getattr(s, "pid", None)) is not None
                ]
                zygote = backend.zygote_pid
                return {
                    "rss_kb": rss,
                    "pss_kb": pss,
                    "zygote_kb": proc_memory_kb(zygote) if zygote else {},
                }
            finally:
                for s in sandboxes:
                    await s.aclose()


def process_memory(count: int) -> tuple[dict[str, Any], dict[str, Any]]:
    workers = uvloop.run(_process_workers(count))
    command = [sys.executable, "-u", "-B", "-P", "-s", str(HERE / "floors" / "fork.py")]
    floor = run_json([*command, "idle", str(count)], timeout_s=60, env=ZYGOTE_ENV)
    return workers, floor


# -- wasm backend (each in a fresh process) ----------------------------------------------------


def _self_rss_kb() -> int:
    return proc_memory_kb(os.getpid())["rss"]


async def _wasm_growth(count: int) -> dict[str, Any]:
    from nfaas.sandboxes.wasm import WasmBackend

    with tempfile.TemporaryDirectory(prefix="nfaas-bench-") as tmp:
        code = _code(Path(tmp), "wasm")
        backend = WasmBackend()
        await backend.start()
        try:
            compiled = await backend.compile(code, Path(tmp) / "compiled")
            code = FunctionCode(
                code.app, code.name, code.version, code.handler, code.path, code.limits,
                compiled_path=compiled,
            )  # fmt: skip
            for s in await _loaded(backend, code, 2):  # engine, module cache, code pages
                await s.aclose()
            before = _self_rss_kb()
            sandboxes = await _loaded(backend, code, count)
            after = _self_rss_kb()
            linear = [(await s.stats()).rss_bytes / KIB for s in sandboxes]
            for s in sandboxes:
                await s.aclose()
        finally:
            await backend.aclose()
    return {"growth_kb": (after - before) / count, "linear_kb": linear}


def _wasm_floor_growth(count: int) -> dict[str, Any]:
    engine = wasmtime.Engine()
    module = wasmtime.Module(engine, bytes(wasmtime.wat2wasm(WAT_ECHO)))
    kept = []
    for _ in range(2):
        store = wasmtime.Store(engine)
        wasmtime.Instance(store, module, [])
    before = _self_rss_kb()
    for _ in range(count):
        store = wasmtime.Store(engine)
        instance = wasmtime.Instance(store, module, [])
        echo = instance.exports(store)["echo"]
        assert isinstance(echo, wasmtime.Func)
        echo(store, 0, 0)
        kept.append((store, instance))
    after = _self_rss_kb()
    return {"growth_kb": (after - before) / count}


def _wasm_in_child(kind: str, count: int) -> dict[str, Any]:
    command = [sys.executable, "-B", "-m", "benchmarks.memory", kind, str(count)]
    result: dict[str, Any] = run_json(command, timeout_s=120)
    return result


# -- the section -------------------------------------------------------------------------------


def run(*, rounds: int) -> Section:
    section = Section(
        "memory",
        "Resident memory per idle instance",
        "process: an idle child forked from an equally warm interpreter; "
        "wasm: bare wasmtime-py Store + Instance of the same module",
    )
    workers, floor = process_memory(INSTANCES)
    if not workers["rss_kb"] or not floor["children"]:
        raise BenchmarkError("no worker memory could be read")
    rss = summarize([kb / KIB for kb in workers["rss_kb"]])
    pss = summarize([kb / KIB for kb in workers["pss_kb"]])
    floor_rss = summarize([c["rss"] / KIB for c in floor["children"]])
    floor_pss = summarize([c.get("pss", 0) / KIB for c in floor["children"]])
    section.add(Figure("process.rss", "process: worker RSS, median", "MiB", rss.p50, floor_rss.p50))
    section.add(Figure("process.pss", "process: worker PSS, median", "MiB", pss.p50, floor_pss.p50))

    wasm = [_wasm_in_child("wasm", INSTANCES) for _ in range(rounds)]
    bare = [_wasm_in_child("wasm-floor", INSTANCES) for _ in range(rounds)]
    growth = median([r["growth_kb"] for r in wasm]) / KIB
    bare_growth = median([r["growth_kb"] for r in bare]) / KIB
    linear = median([median(r["linear_kb"]) for r in wasm]) / KIB
    section.add(
        Figure("wasm.growth", "wasm: platform RSS growth per instance", "MiB", growth, bare_growth)
    )
    section.add(Figure("wasm.linear", "wasm: linear memory per instance", "MiB", linear))
    section.method = (
        f"{INSTANCES} instances of an echo function, each loaded and invoked once, then idle; "
        f"process figures over the {INSTANCES} workers (medians), Wasm growth over "
        f"{INSTANCES} instances in a fresh process, median of {rounds} round(s)."
    )
    section.detail = {
        "process": {
            "rss_mib": rss.as_dict(),
            "pss_mib": pss.as_dict(),
            "zygote_kb": workers["zygote_kb"],
            "floor_rss_mib": floor_rss.as_dict(),
            "floor_pss_mib": floor_pss.as_dict(),
            "floor_parent_kb": floor["parent"],
        },
        "wasm": {"rounds": wasm, "floor_rounds": bare},
    }
    return section


def main() -> None:
    kind, count = sys.argv[1], int(sys.argv[2])
    if kind == "wasm":
        print(json.dumps(uvloop.run(_wasm_growth(count))))
    elif kind == "wasm-floor":
        print(json.dumps(_wasm_floor_growth(count)))
    else:
        sys.exit(f"unknown kind {kind!r}")


if __name__ == "__main__":
    main()
