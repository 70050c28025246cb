"""Experiment 1's figures and Markdown: memory over time and boot time, beside Fig. 8."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from nfaas.experiments.footprint import MB, PAPER, level_mb
from nfaas.experiments.harness import Estimate, ci95, figure, markdown_table, save_figure, write_csv

COLOURS = {
    "process": "tab:green",
    "container": "tab:orange",
    "microvm": "tab:blue",
    "wasm": "tab:purple",
}
MEASURE = {
    "process": "worker PSS (/proc)",
    "container": "container cgroup memory.usage_in_bytes",
    "microvm": "QEMU's host cgroup memory.usage_in_bytes",
    "wasm": "growth of the platform process's RSS",
}


def _mean_trace(traces: list[dict[str, Any]], grid: np.ndarray) -> np.ndarray:
    curves = []
    for trace in traces:
        t, b = np.asarray(trace["samples"], dtype=np.float64).T
        curves.append(np.interp(grid, t, b / MB, right=np.nan))
    with warnings.catch_warnings():  # past the shortest trace some columns are all NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(np.nanmean(np.asarray(curves), axis=0))


def _boot(result: dict[str, Any], key: str) -> Estimate:
    return ci95(b[key] for b in result.get("boots", []))


def plot_memory(results: dict[str, Any], path: Path) -> None:
    measured = {n: r for n, r in results.items() if "traces" in r}
    fig = figure(8.0, 5.2)
    for i, (name, result) in enumerate(measured.items(), start=1):
        ax = fig.add_subplot(2, 2, i)
        traces = result["traces"]
        end = max(s[-1][0] for tr in traces.values() for s in [t["samples"] for t in tr])
        grid = np.linspace(0, end, 200)
        for scenario, style in (("deploy", ":"), ("deploy+invoke", "-")):
            if traces[scenario]:
                ax.plot(grid, _mean_trace(traces[scenario], grid), style,
                        color=COLOURS.get(name, "k"), label=scenario)  # fmt: skip
        boot = _boot(result, "wall_ms").mean / 1e3
        ax.axvline(boot, linestyle="-.", color="grey", label=f"boot {boot * 1e3:.0f} ms")
        ax.set_title(f"{name}: {MEASURE.get(name, '')}", fontsize=8)
        ax.set_xlabel("time since deployment began (s)", fontsize=8)
        ax.set_ylabel("MB", fontsize=8)
        ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_boot(results: dict[str, Any], path: Path) -> None:
    names = [n for n, r in results.items() if r.get("boots")]
    fig = figure(6.4, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(names))
    for offset, key, label in ((-0.2, "wall_ms", "wall"), (0.2, "cpu_ms", "user + system CPU")):
        est = [_boot(results[n], key) for n in names]
        errors = [0 if np.isnan(e.half_width) else e.half_width for e in est]
        ax.bar(x + offset, [e.mean for e in est], 0.4, yerr=errors, capsize=3, label=label)
    for label, ms in PAPER["boot_ms"].items():
        ax.axhline(ms, linestyle="-.", linewidth=1, color="red" if "Fire" in label else "blue",
                   label=f"paper: {label} {ms:g} ms")  # fmt: skip
    ax.set_yscale("log")
    ax.set_xticks(x, names)
    ax.set_ylabel("deployment (prepare + load), ms")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def _rows(results: dict[str, Any]) -> tuple[list[list[str]], list[dict[str, Any]]]:
    rows, flat = [], []
    for name, result in results.items():
        if "boots" not in result:
            why = " ".join(str(result.get("unavailable") or result.get("failed", "")).split())
            why = why if len(why) <= 240 else why[:240] + " …"  # the whole text is in data.json
            rows.append([name, f"not measured: {why}", "", "", "", "", ""])
            continue
        traces = result["traces"]
        deployed = ci95(level_mb(t["samples"], t["deployed_s"]) for t in traces["deploy"])
        invoked = ci95(level_mb(t["samples"], t["invoked_s"]) for t in traces["deploy+invoke"])
        wall, cpu = _boot(result, "wall_ms"), _boot(result, "cpu_ms")
        first = _boot(result, "first_line_ms")
        rows.append([name, wall.text(digits=1), cpu.text(digits=1), first.text(digits=1),
                     deployed.text(digits=1), invoked.text(digits=1), MEASURE.get(name, "")])  # fmt: skip
        for key, est in (("boot_wall_ms", wall), ("boot_cpu_ms", cpu), ("first_line_ms", first),
                         ("deploy_mb", deployed), ("with_vnf_mb", invoked)):  # fmt: skip
            flat.append({"backend": name, "figure": key, **est.as_dict()})
        for boot in result.get("cold_boots", []):
            flat.append({"backend": "microvm (from nothing)", "figure": "boot_wall_ms",
                         "mean": boot["wall_ms"], "ci_low": "", "ci_high": "", "n": 1})  # fmt: skip
    return rows, flat


def footprint_markdown(results: dict[str, Any], folder: Path, reps: str) -> str:
    plot_memory(results, folder / "fig8-memory.png")
    plot_boot(results, folder / "fig8-boot.png")
    rows, flat = _rows(results)
    write_csv(folder / "summary.csv", flat)
    headers = ["backend", "boot wall, ms", "boot CPU, ms", "to first line, ms",
               "deployed, MB", "with the VNF run, MB", "memory as measured by"]  # fmt: skip
    paper = markdown_table(
        ["paper (Kata, NetBricks packet-test)", "boot (system + user), ms", "deployment overhead, MB",
         "with the VNF, MB"],
        [[k, f"{PAPER['boot_ms'][k]:g}", f"{PAPER['deploy_overhead_mb'][k]:g}",
          f"{PAPER['with_vnf_mb'][k]:g}"] for k in PAPER["boot_ms"]],
    )  # fmt: skip
    cold = [b["wall_ms"] for r in results.values() for b in r.get("cold_boots", [])]
    cold_text = (
        f"\nA microVM booted from nothing (no snapshot) took {ci95(cold).text(digits=0)} ms "
        f"wall over {len(cold)} boot(s).\n"
        if cold
        else ""
    )
    return (
        f"{reps}. Means ± 95% confidence half-widths (Student t).\n\n"
        + markdown_table(headers, rows)
        + cold_text
        + "\nThe paper's points (section 5.2.1; Kata 1.11 on a Xeon E5-2640 v4):\n\n"
        + paper
        + "\n![memory over time](fig8-memory.png)\n\n![boot time](fig8-boot.png)\n"
    )
