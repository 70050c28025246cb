"""Packets per second through the example NFs (nfaas.nf), by batch size, against floors.

    .venv/bin/python benchmarks/nf.py [--quick]

In one run, on one core, from frames in memory:

* ``source``: the rate at which batches are made from frames alone (what any
  NF here pays before its first operator; the ceiling of the figures below);
* ``firewall`` (10 rules) and ``lb`` (Maglev, connection table, destination
  rewrite with checksums) as ``nfaas.nf`` graphs, batches of 32, 256 and 1024;
* the same two NFs written per packet in plain Python (``struct``, dicts, a
  checksum loop): the ``speedup`` is the graph's rate over this one.

Each figure is the median of several timed rounds. Results go to
``benchmarks/results/nf.json``; ``benchmarks/run.py --only nf`` runs the same
measurement as a section of the suite (``section``). Not a test: nothing here
asserts a rate.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.figures import Figure, Goal, Section
from benchmarks.machine import describe
from benchmarks.nf_baseline import FIREWALL_RULES, PerPacketFirewall, PerPacketLb, make_traffic
from benchmarks.stats import median
from nfaas.nf import NetworkFunction, PacketBatch

RESULTS = Path(__file__).resolve().parent / "results" / "nf.json"
BATCHES = (32, 256, 1024)
VIP = "10.0.0.100:80"
BACKENDS = [f"10.1.0.{i}:8080" for i in range(1, 9)]
#: issue 5: at least 1 Mpps per core for a 10-rule firewall at batch 256
GOAL_PPS = 1_000_000


def load_example(relative: str) -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "examples" / relative
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.dont_write_bytecode = True  # no __pycache__ in the example's package source
    spec.loader.exec_module(module)
    return module


def rate(run_once: Callable[[], int], seconds: float, rounds: int) -> float:
    """Median packets per second of ``rounds`` rounds, each repeating ``run_once`` for ``seconds``."""
    run_once()  # warm caches and lazy imports
    rates = []
    for _ in range(rounds):
        packets, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            packets += run_once()
        rates.append(packets / elapsed)
    return median(rates)


def chunks(frames: list[bytes], size: int) -> list[list[bytes]]:
    return [frames[i : i + size] for i in range(0, len(frames) - size + 1, size)]


def graph_rate(
    nf: NetworkFunction, frames: list[bytes], size: int, seconds: float, rounds: int
) -> float:
    instance = nf.instance()
    parts = chunks(frames, size)

    def once() -> int:
        for part in parts:
            instance.process(PacketBatch.from_frames(part))
        return len(parts) * size

    return rate(once, seconds, rounds)


def source_rate(frames: list[bytes], size: int, seconds: float, rounds: int) -> float:
    parts = chunks(frames, size)

    def once() -> int:
        for part in parts:
            PacketBatch.from_frames(part)
        return len(parts) * size

    return rate(once, seconds, rounds)


def per_packet_rate(
    nf: Callable[[bytes], bytes | None], frames: list[bytes], seconds: float, rounds: int
) -> float:
    def once() -> int:
        for f in frames:
            nf(f)
        return len(frames)

    return rate(once, seconds, rounds)


def same_output(firewall: ModuleType, lb: ModuleType, frames: list[bytes]) -> bool:
    """Whether the graphs forward exactly the frames the per-packet versions forward."""
    for graph, plain in ((firewall.build(FIREWALL_RULES, "deny"), PerPacketFirewall(FIREWALL_RULES)),
                         (lb.build(VIP, BACKENDS), PerPacketLb(VIP, BACKENDS))):  # fmt: skip
        out = (
            graph.instance()
            .process(PacketBatch.from_frames(frames))
            .get("out", PacketBatch.empty())
        )
        expected = [f for f in map(plain, frames) if f is not None]
        if out.frames() != expected:
            return False
    return True


def measure(quick: bool) -> dict[str, object]:
    seconds, rounds = (0.25, 3) if quick else (1.0, 5)
    frames = make_traffic(4096 if quick else 16384, flows=1000)
    firewall = load_example("nf-firewall/Files/firewall/firewall.py")
    lb = load_example("nf-lb/Files/lb/lb.py")
    results: dict[str, object] = {
        "packets": len(frames),
        "frame_bytes_mean": sum(map(len, frames)) / len(frames),
    }
    results["same_output_as_per_packet"] = same_output(firewall, lb, frames[:2048])
    floors = {
        "firewall": per_packet_rate(PerPacketFirewall(FIREWALL_RULES), frames, seconds, rounds),
        "lb": per_packet_rate(PerPacketLb(VIP, BACKENDS), frames, seconds, rounds),
    }
    builders: dict[str, Callable[[], NetworkFunction]] = {
        "firewall": lambda: firewall.build(FIREWALL_RULES, "deny"),
        "lb": lambda: lb.build(VIP, BACKENDS),
    }
    for size in BATCHES:
        row: dict[str, float] = {"source_pps": source_rate(frames, size, seconds, rounds)}
        for name, build in builders.items():
            pps = graph_rate(build(), frames, size, seconds, rounds)
            row[f"{name}_pps"] = pps
            row[f"{name}_speedup"] = pps / floors[name]
        results[f"batch_{size}"] = row
        line = f"batch {size:5d}: " + ", ".join(f"{k} {v:,.1f}" for k, v in row.items())
        print(line, file=sys.stderr, flush=True)
    results["per_packet_python_pps"] = floors
    results["seconds_per_round"], results["rounds"] = seconds, rounds
    line = ", ".join(f"{k} {v:,.0f}" for k, v in floors.items())
    print(f"per-packet pure Python: {line}", file=sys.stderr)
    return results


NAMES = {"firewall": "firewall (10 rules)", "lb": "load balancer"}


def section(results: dict[str, object]) -> Section:
    """The run as a section of ``benchmarks/run.py``'s results (and ``docs/benchmarks.md``)."""
    result = Section(
        "nf",
        "Network functions in user space (nfaas.nf): packets per second on one core",
        "the same NF written per packet in plain Python; the rate at which batches are made "
        "from the frames alone (the source)",
    )
    floors = results["per_packet_python_pps"]
    assert isinstance(floors, dict)
    for size in BATCHES:
        row = results[f"batch_{size}"]
        assert isinstance(row, dict)
        for nf, name in NAMES.items():
            goal = None
            if nf == "firewall" and size == 256:
                goal = Goal("at_least", GOAL_PPS, "≥ 1 Mpps per core (issue 5)")
            result.add(Figure(f"{nf}.b{size}", f"{name}, batch {size}, against per-packet Python",
                              "/s", row[f"{nf}_pps"], floors[nf], goal))  # fmt: skip
            result.add(Figure(f"{nf}.b{size}.source", f"{name}, batch {size}, against the source",
                              "/s", row[f"{nf}_pps"], row["source_pps"]))  # fmt: skip
    same = "the same" if results["same_output_as_per_packet"] else "NOT the same"
    result.method = (
        f"{results['packets']:,} frames in memory (1,000 UDP and TCP flows, mean "
        f"{results['frame_bytes_mean']:.0f} bytes), cut into batches of 32, 256 and 1024 and "
        f"run through the example NFs (`examples/nf-firewall`, `examples/nf-lb`) in this "
        f"process, one thread; each rate is the median of {results['rounds']} rounds of "
        f"{results['seconds_per_round']:g} s. The per-packet versions "
        f"(`benchmarks/nf_baseline.py`) forwarded {same} frames as the graphs. Also "
        "`.venv/bin/python benchmarks/nf.py`."
    )
    result.detail = dict(results)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer packets, shorter rounds")
    args = parser.parse_args()
    started = time.time()
    results = measure(args.quick)
    document = {"benchmark": "nf", "quick": args.quick, "started": started, "machine": describe(),
                "results": results}  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    print(f"written to {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
