"""Cold start: event arrival -> the function's first line, from a runtime pool and without one.

The definition is function management's own (``FunctionManager.invoke``): the
arrival is stamped before dispatch, the sandbox reports when the handler began
(``Result.first_line_at``, CLOCK_MONOTONIC, shared by every process), and the
cold start is the difference. Every sample is a true cold start: before it, every
instance is deleted and the runtime pool is left to refill and settle.

Floors: for the process backend a bare ``os.fork()`` of an interpreter as warm
as the zygote, fork -> one byte back on a pipe (``floors/fork.py``); for the Wasm
backend a bare wasmtime-py ``Instance(store, module, [])`` plus one call of an
export, from a deserialized module.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import uvloop
import wasmtime

from benchmarks.figures import Figure, Goal, Section
from benchmarks.functions import APP, WAT_ECHO, BenchFunction
from benchmarks.inprocess import delete_instances, platform_with, pool_of, settle, version_of
from benchmarks.processes import HERE, ZYGOTE_ENV, BenchmarkError, run_json
from benchmarks.stats import Summary, summarize
from nfaas.platform import Platform
from nfaas.sandboxes.base import Event

PROCESS_GOAL = Goal("at_most", 5.0, "pool p50 ≤ 5 ms")
WASM_GOAL = Goal("at_most", 1.0, "pool p50 ≤ 1 ms")
MS = 1000.0
US = 1_000_000.0
#: pause around each step of the breakdown, so that one sample's aftermath misses the next
SETTLE_S = 0.02
#: the floor and the two paths are measured in this many alternating chunks, so that a
#: neighbour's burst on this shared machine falls on all three alike
CHUNKS = 5

PROCESS_FUNCTIONS = [
    BenchFunction("py-pool", "process", max_quick_start=1),
    BenchFunction("py-nopool", "process", max_quick_start=0),
]
WASM_FUNCTIONS = [
    BenchFunction("wasm-pool", "wasm", max_quick_start=1),
    BenchFunction("wasm-nopool", "wasm", max_quick_start=0),
]


async def cold_samples(
    platform: Platform, function: str, samples: int, *, from_pool: bool
) -> list[float]:
    """``samples`` cold starts of ``function``, in seconds; each from a settled platform."""
    pool = pool_of(platform, function)
    stats = platform.telemetry.stats(version_of(platform, function).key)
    counted = stats.cold_starts
    out: list[float] = []
    for _ in range(samples):
        await settle(platform, pool)
        arrival = time.monotonic()
        result = await platform.router.dispatch(
            APP, function, Event("invoke", b"x"), arrival=arrival
        )
        if result.first_line_at is None:
            raise BenchmarkError(f"{function}: the sandbox reported no first line")
        out.append(result.first_line_at - arrival)
        instances = [i for i in platform.manager.instances() if i.function == function]
        if len(instances) != 1 or instances[0].from_pool is not from_pool:
            raise BenchmarkError(f"{function}: expected one instance, from_pool={from_pool}")
        delete_instances(platform)
    if stats.cold_starts - counted != samples:
        raise BenchmarkError(
            f"{function}: telemetry counted {stats.cold_starts - counted} cold starts, not {samples}"
        )
    return out


def minor_faults(pid: int | None) -> int | None:
    """Minor page faults of ``pid`` so far (proc(5) field 10), None if unknown."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rpartition(b")")[2].split()[7])
    except (OSError, ValueError, IndexError):
        return None


async def phases(
    platform: Platform, function: str, samples: int
) -> tuple[dict[str, Summary], Summary | None]:
    """Where a cold start goes, taken on the backend directly: prepare, load, first call (ms).

    Also the worker's minor page faults during the load, for the process backend.
    """
    version = version_of(platform, function)
    backend = platform.backend_now(version.backend)
    prepare: list[float] = []
    load: list[float] = []
    first_line: list[float] = []
    faults: list[float] = []
    for _ in range(samples):
        async with backend.create() as sandbox:
            t0 = time.monotonic()
            await sandbox.prepare()
            prepared = time.monotonic()
            await asyncio.sleep(SETTLE_S)  # as a pooled sandbox waits for its event
            pid = getattr(sandbox, "pid", None)  # the process backend's worker
            before = minor_faults(pid)
            t1 = time.monotonic()
            await sandbox.load(version.code)
            t2 = time.monotonic()
            after = minor_faults(pid)
            result = await sandbox.invoke(Event("invoke", b"x"))
            assert result.first_line_at is not None
        if before is not None and after is not None:
            faults.append(after - before)
        prepare.append(prepared - t0)
        load.append(t2 - t1)
        first_line.append(result.first_line_at - t2)
        await asyncio.sleep(SETTLE_S)  # the closed worker is reaped before the next fork
    steps = {
        "prepare (not paid from a pool)": summarize(prepare).scaled(MS),
        "load": summarize(load).scaled(MS),
        "invoke -> first line": summarize(first_line).scaled(MS),
    }
    return steps, summarize(faults) if faults else None


def _cold_figures(
    section: Section, pool: Summary, nopool: Summary, floor: Summary, goal: Goal
) -> None:
    section.add(Figure("pool.p50", "from a pool, p50", "ms", pool.p50, floor.p50, goal))
    section.add(Figure("pool.p90", "from a pool, p90", "ms", pool.p90, floor.p90))
    section.add(Figure("pool.p99", "from a pool, p99", "ms", pool.p99, floor.p99))
    section.add(Figure("nopool.p50", "without a pool, p50", "ms", nopool.p50, floor.p50))
    section.add(Figure("nopool.p99", "without a pool, p99", "ms", nopool.p99, floor.p99))


async def interleaved(
    platform: Platform, prefix: str, samples: int, floor_chunk: Callable[[], None]
) -> tuple[Summary, Summary]:
    """``samples`` cold starts from the pool and without, in chunks alternating with the floor (ms)."""
    # One of each first: page cache, code folder, import caches, module cache.
    await cold_samples(platform, f"{prefix}-pool", 1, from_pool=True)
    await cold_samples(platform, f"{prefix}-nopool", 1, from_pool=False)
    pool: list[float] = []
    nopool: list[float] = []
    per_chunk = -(-samples // CHUNKS)
    while len(pool) < samples:
        n = min(per_chunk, samples - len(pool))
        floor_chunk()
        pool += await cold_samples(platform, f"{prefix}-pool", n, from_pool=True)
        nopool += await cold_samples(platform, f"{prefix}-nopool", n, from_pool=False)
    return summarize(pool).scaled(MS), summarize(nopool).scaled(MS)


# -- process backend ---------------------------------------------------------------------------


def _fork_script(mode: str, count: int) -> list[str]:
    # The zygote's interpreter, flags and environment (zygote_client.ZygoteClient.start).
    command = [sys.executable, "-u", "-B", "-P", "-s", str(HERE / "floors" / "fork.py")]
    return [*command, mode, str(count)]


def fork_floor(samples: int) -> list[float]:
    """Bare fork -> byte, in seconds, in an interpreter started as the zygote is."""
    result = run_json(_fork_script("cold", samples), timeout_s=60, env=ZYGOTE_ENV)
    return list(result["samples"])


def cow_fault_us(pages: int = 4096) -> float:
    """The cost of one copy-on-write fault in a freshly forked child, µs (median of 5)."""
    result = run_json(_fork_script("cow", pages), timeout_s=60, env=ZYGOTE_ENV)
    return summarize(result["samples"]).p50 * US


async def _process(samples: int) -> Section:
    section = Section(
        "cold-process",
        "Cold start, process backend (Python)",
        "bare os.fork() of an equally warm interpreter, fork → 1 byte on a pipe",
    )
    forks: list[float] = []
    per_chunk = max(3 * samples // CHUNKS, 10)
    async with platform_with(PROCESS_FUNCTIONS) as platform:
        pool, nopool = await interleaved(
            platform, "py", samples, lambda: forks.extend(fork_floor(per_chunk))
        )
        breakdown, load_faults = await phases(platform, "py-pool", max(samples // 2, 10))
        pool_size = pool_of(platform, "py-pool").size
    floor = summarize(forks).scaled(MS)
    _cold_figures(section, pool, nopool, floor, PROCESS_GOAL)
    section.method = (
        f"{pool.n} cold starts from the pool and {nopool.n} without, each after every "
        f"instance was deleted and the pool (size {pool_size}) refilled; in-process Platform under "
        f"uvloop, event dispatched by the router. Floor: {floor.n} forks. Floor and both "
        f"paths alternate in {CHUNKS} chunks."
    )
    section.detail = {
        "pool": pool.as_dict(),
        "nopool": nopool.as_dict(),
        "floor": floor.as_dict(),
        "phases_ms": {k: v.as_dict() for k, v in breakdown.items()},
        "cow_fault_us": cow_fault_us(),
        "load_minor_faults": load_faults.as_dict() if load_faults else None,
    }
    return section


def run_process(samples: int) -> Section:
    return uvloop.run(_process(samples))


# -- wasm backend ------------------------------------------------------------------------------

WASM_FLOOR_PARTS = ("floor", "instance", "exports", "call")


@contextlib.contextmanager
def bare_wasm() -> Iterator[Callable[[int], dict[str, list[float]]]]:
    """A sampler of bare ``Instance(store, module, [])`` + one call, from a deserialized module.

    Each sample gives, in seconds, the whole ("floor") and its parts: the
    instantiation, the export's lookup, the call.
    """
    engine = wasmtime.Engine()
    with tempfile.TemporaryDirectory(prefix="nfaas-bench-") as tmp:
        path = Path(tmp) / "echo.cwasm"
        path.write_bytes(wasmtime.Module(engine, bytes(wasmtime.wat2wasm(WAT_ECHO))).serialize())
        module = wasmtime.Module.deserialize_file(engine, str(path))

        def sample(count: int) -> dict[str, list[float]]:
            parts: dict[str, list[float]] = {part: [] for part in WASM_FLOOR_PARTS}
            for _ in range(count):
                store = wasmtime.Store(engine)
                t0 = time.perf_counter()
                instance = wasmtime.Instance(store, module, [])
                t1 = time.perf_counter()
                echo = instance.exports(store)["echo"]
                t2 = time.perf_counter()
                assert isinstance(echo, wasmtime.Func)
                echo(store, 0, 0)
                t3 = time.perf_counter()
                for part, took in zip(parts, (t3 - t0, t1 - t0, t2 - t1, t3 - t2), strict=True):
                    parts[part].append(took)
            return parts

        sample(20)  # the first ones warm the allocator and the code's pages
        yield sample


async def _wasm(samples: int) -> Section:
    section = Section(
        "cold-wasm",
        "Cold start, Wasm backend (precompiled module)",
        "bare wasmtime-py Instance(store, module, []) + one call, from a deserialized module",
    )
    bare: dict[str, list[float]] = {part: [] for part in WASM_FLOOR_PARTS}
    per_chunk = max(10 * samples // CHUNKS, 40)

    def floor_chunk() -> None:
        for part, values in sample(per_chunk).items():
            bare[part] += values

    with bare_wasm() as sample:
        async with platform_with(WASM_FUNCTIONS) as platform:
            if version_of(platform, "wasm-pool").code.compiled_path is None:
                raise BenchmarkError("onboarding made no precompiled module")
            pool, nopool = await interleaved(platform, "wasm", samples, floor_chunk)
            breakdown, _ = await phases(platform, "wasm-pool", max(samples, 20))
    floor_parts = {part: summarize(values).scaled(MS) for part, values in bare.items()}
    floor = floor_parts.pop("floor")
    _cold_figures(section, pool, nopool, floor, WASM_GOAL)
    section.method = (
        f"{pool.n} cold starts from the pool and {nopool.n} without, precompiled at "
        f"onboarding, each after every instance was deleted and the pool refilled; "
        f"in-process Platform under uvloop. Floor: {floor.n} bare instantiations. Floor and "
        f"both paths alternate in {CHUNKS} chunks."
    )
    section.detail = {
        "pool": pool.as_dict(),
        "nopool": nopool.as_dict(),
        "floor": floor.as_dict(),
        "phases_ms": {k: v.as_dict() for k, v in breakdown.items()},
        "floor_parts_ms": {k: v.as_dict() for k, v in floor_parts.items()},
    }
    return section


def run_wasm(samples: int) -> Section:
    return uvloop.run(_wasm(samples))
