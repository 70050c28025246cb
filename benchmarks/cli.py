"""The command line of ``benchmarks/run.py``: choose, run, print, save, render."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import machine, report
from benchmarks.figures import Section
from benchmarks.processes import ROOT


@dataclass(frozen=True, slots=True)
class Settings:
    cold_samples: int
    rounds: int
    duration_s: int
    warmup_s: int
    connections: int
    window: int
    #: cold starts of each path of the container backend (runc is slow: fewer)
    container_samples: int
    #: microVM restores of each path, and boots from nothing (seconds each under TCG)
    microvm_samples: int
    microvm_boots: int
    quick: bool


def settings(args: argparse.Namespace) -> Settings:
    if args.quick:
        return Settings(15, 1, 2, 1, args.connections, args.window, 15, 8, 2, True)
    return Settings(60, 5, 4, 1, args.connections, args.window, 30, 20, 4, False)


def _cold_process(s: Settings) -> Section:
    from benchmarks import cold_start

    return cold_start.run_process(s.cold_samples)


def _cold_wasm(s: Settings) -> Section:
    from benchmarks import cold_start

    return cold_start.run_wasm(s.cold_samples)


def _cold_container(s: Settings) -> Section:
    from benchmarks import cold_container

    return cold_container.run(s.container_samples)


def _cold_microvm(s: Settings) -> Section:
    from benchmarks import cold_microvm

    return cold_microvm.run(s.microvm_samples, s.microvm_boots)


def _ebpf(s: Settings) -> Section:
    import asyncio

    from benchmarks import ebpf

    return ebpf.section(asyncio.run(ebpf.run(s.quick)))


def _keepalive(s: Settings) -> Section:
    from benchmarks import keepalive

    return keepalive.section(keepalive.run(s.quick))


def _nf(s: Settings) -> Section:
    from benchmarks import nf

    return nf.section(nf.measure(s.quick))


def _mqtt(s: Settings) -> Section:
    from benchmarks import mqtt

    return mqtt.section(mqtt.run(s.quick))


def _http(s: Settings) -> Section:
    from benchmarks import http_load

    return http_load.run(
        rounds=s.rounds, duration_s=s.duration_s, warmup_s=s.warmup_s, connections=s.connections
    )


def _udp(s: Settings) -> Section:
    from benchmarks import udp_load

    return udp_load.run(
        rounds=s.rounds, duration_s=s.duration_s, warmup_s=s.warmup_s, window=s.window
    )


def _memory(s: Settings) -> Section:
    from benchmarks import memory

    return memory.run(rounds=s.rounds)


BENCHMARKS: dict[str, Callable[[Settings], Section]] = {
    "cold-process": _cold_process,
    "cold-wasm": _cold_wasm,
    "cold-container": _cold_container,
    "cold-microvm": _cold_microvm,
    "http": _http,
    "udp": _udp,
    "memory": _memory,
    "ebpf": _ebpf,
    "keepalive": _keepalive,
    "nf": _nf,
    "mqtt": _mqtt,
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="Measure cold starts, warm HTTP and UDP invocations and idle memory, "
        "each beside its floor, in one run.",
    )
    parser.add_argument("--quick", action="store_true", help="fewer samples and shorter loads")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(BENCHMARKS),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "latest.json",
        help="where to write the results (JSON)",
    )  # fmt: skip
    parser.add_argument(
        "--write-docs", action="store_true", help="render docs/benchmarks.md from the results"
    )
    parser.add_argument(
        "--from", dest="source", type=Path,
        help="with --write-docs: render from this results file instead of running",
    )  # fmt: skip
    parser.add_argument(
        "--merge", action="append", type=Path, metavar="FILE",
        help="with --from: replace (or add) the sections of this results file, each marked "
        "with its own run, write the merged results to --out and render from them (repeatable)",
    )  # fmt: skip
    parser.add_argument("--connections", type=int, default=16, help="HTTP throughput concurrency")
    parser.add_argument("--window", type=int, default=64, help="UDP datagrams in flight")
    args = parser.parse_args(argv)
    if args.source is not None and not args.write_docs:
        parser.error("--from goes with --write-docs")
    if args.merge and args.source is None:
        parser.error("--merge goes with --from")
    if not 1 <= args.connections <= 256 or not 1 <= args.window <= 1024:
        parser.error("--connections 1-256, --window 1-1024")
    return args


def run_all(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    chosen = args.only or list(BENCHMARKS)
    s = settings(args)
    started = time.monotonic()
    results: dict[str, Any] = {
        "command": shlex.join(["benchmarks/run.py", *argv]),
        "started_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "settings": _settings_dict(s),
        "machine": machine.describe(),
        "sections": [],
    }
    for name in chosen:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            section = BENCHMARKS[name](s).as_dict()
        except Exception as exc:  # one broken benchmark must not cost the others' figures
            traceback.print_exc()
            section = failed_section(name, exc)
        results["sections"].append(section)
        print(f"  {name} took {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    results["duration_s"] = time.monotonic() - started
    results["load_average_at_end"] = machine.load_average()
    return results


def failed_section(name: str, exc: BaseException) -> dict[str, Any]:
    return {
        "name": name,
        "title": name,
        "floor": "",
        "method": "",
        "figures": [],
        "detail": {},
        "error": f"{type(exc).__name__}: {exc}"[:2000],
    }


def merge(results: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """``results`` with ``other``'s sections in place of (or beside) its own of the same name.

    Each section taken from ``other`` keeps a ``run`` saying when and how it was
    measured, so that the page can say which sections come from another run.
    """
    run = {
        "command": other["command"],
        "started_at": other["started_at"],
        "quick": other.get("quick", False),
        "load_average_at_end": other.get("load_average_at_end"),
    }
    sections = {s["name"]: s for s in results["sections"]}
    for section in other["sections"]:
        sections[section["name"]] = {**section, "run": section.get("run", run)}
    order = list(BENCHMARKS)
    merged = sorted(
        sections.values(), key=lambda s: order.index(s["name"]) if s["name"] in order else 99
    )
    return {**results, "sections": merged}


def _settings_dict(s: Settings) -> dict[str, Any]:
    return {field: getattr(s, field) for field in Settings.__slots__}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.source is not None:
        results = json.loads(args.source.read_text())
        for other in args.merge or []:
            results = merge(results, json.loads(other.read_text()))
        if args.merge:
            args.out.write_text(json.dumps(results, indent=2) + "\n")
            print(f"merged results written to {args.out}", file=sys.stderr)
    else:
        results = run_all(args, argv)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(report.terminal_table(results))
        print(f"\nresults written to {args.out}", file=sys.stderr)
    if args.write_docs:
        if len(results["sections"]) < len(BENCHMARKS):
            print("warning: the page will show only the benchmarks that ran", file=sys.stderr)
        docs = ROOT / "docs" / "benchmarks.md"
        docs.write_text(report.markdown(results))
        print(f"{docs} written", file=sys.stderr)
    return 1 if any(section.get("error") for section in results["sections"]) else 0
