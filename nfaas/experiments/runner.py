"""Runs experiments by name and writes their raw data, figures and report.

``out/<name>/data.json`` holds each experiment's raw data (every repetition),
beside its CSV files, PNG figures and ``report.md``; ``out/README.md`` gathers
the sections present, the machine, and the goals of issue 8. Experiment 4
reuses experiments 1 and 2 from ``out`` when they are there, and runs them
first otherwise.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from nfaas.errors import ExperimentError
from nfaas.experiments.harness import describe_machine, machine_markdown, write_json
from nfaas.experiments.profiles import Profile

EXPERIMENTS = {
    "footprint": "1. Sandbox footprint and boot (Fig. 8)",
    "broker": "2. A broker VNF under load (Fig. 9-11, Table 4)",
    "queueing": "3. Queueing models (equations 1-3)",
    "scenarios": "4. Scenario fit (sections 3 and 5.2.2)",
}


async def _measure(name: str, prof: Profile, out: Path) -> Any:
    if name == "footprint":
        from nfaas.experiments.footprint import run_footprint

        return await run_footprint(prof.footprint)
    if name == "broker":
        from nfaas.experiments.broker_load import run_broker_load

        return await run_broker_load(prof.broker)
    if name == "queueing":
        from nfaas.experiments.queueing import run_queueing

        return await run_queueing(prof.queueing)
    from nfaas.experiments.scenarios import scenario_rows

    footprint = load_data(out, "footprint") or await run_experiment("footprint", prof, out)
    broker = load_data(out, "broker") or await run_experiment("broker", prof, out)
    return scenario_rows(footprint, broker)


def _reps(name: str, prof: Profile) -> str:
    f, b, q = prof.footprint, prof.broker, prof.queueing
    return {
        "footprint": f"{f.boot_reps} timed deployments per backend ({f.microvm_boot_reps} for the "
        f"microVM), {f.trace_reps} memory traces per backend and scenario sampled every "
        f"{f.sample_interval_s * 1e3:g} ms, held {f.hold_s:g} s",
        "broker": f"{b.reps} repetitions of {b.duration_s:g} s per point, ack timeout "
        f"{b.ack_timeout_s:g} s",
        "queueing": f"ramp of {q.ramp_duration_s:g} s per point; {q.reps} repetitions of "
        f"{q.duration_s:g} s per load and arrival process",
        "scenarios": "computed from experiments 1 and 2",
    }[name]


def _markdown(name: str, data: Any, folder: Path, prof: Profile) -> str:
    reps = f"Profile `{prof.name}`: {_reps(name, prof)}"
    if name == "footprint":
        from nfaas.experiments.footprint_report import footprint_markdown

        return footprint_markdown(data, folder, reps)
    if name == "broker":
        from nfaas.experiments.broker_report import broker_markdown

        return broker_markdown(data, folder, reps)
    if name == "queueing":
        from nfaas.experiments.queueing_report import queueing_markdown

        return queueing_markdown(data, folder, reps)
    from nfaas.experiments.scenarios import scenarios_markdown

    return f"{reps}.\n\n" + scenarios_markdown(data)


def load_data(out: Path, name: str) -> Any:
    path = out / name / "data.json"
    return json.loads(path.read_text()) if path.exists() else None


async def run_experiment(name: str, prof: Profile, out: Path) -> Any:
    """Measure experiment ``name``, write its folder and refresh ``out/README.md``."""
    if name not in EXPERIMENTS:
        raise ExperimentError(f"no experiment {name!r} (known: {', '.join(EXPERIMENTS)}, all)")
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    write_json(out / "machine.json", describe_machine())
    started = time.time()
    data = await _measure(name, prof, out)
    write_json(folder / "data.json", data)
    data = load_data(out, name)  # as every later reader sees it (JSON types)
    section = _markdown(name, data, folder, prof)
    took = time.time() - started
    (folder / "report.md").write_text(
        f"## {EXPERIMENTS[name]}\n\n{section}\n\n_Ran in {took:.0f} s._\n"
    )
    write_report(out)
    return data


def write_report(out: Path) -> None:
    """``out/README.md``: the machine, the goals, then every experiment's section."""
    from nfaas.experiments.goals import goals_markdown

    machine = load_machine(out)
    parts = ["# nfaas: the IoT paper's evaluation (section 5.2) on this machine\n\n",
             "## Machine\n\n", machine_markdown(machine), "\n## Goals (issue 8)\n\n",
             goals_markdown(out), "\n"]  # fmt: skip
    for name in EXPERIMENTS:
        section = out / name / "report.md"
        if section.exists():
            text = section.read_text().replace("](", f"]({name}/")
            parts.append(text.replace(f"]({name}/http", "](http") + "\n")
    (out / "README.md").write_text("".join(parts))


def load_machine(out: Path) -> dict[str, Any]:
    path = out / "machine.json"
    if not path.exists():
        write_json(path, describe_machine())
    machine: dict[str, Any] = json.loads(path.read_text())
    return machine
