# ruff: noqa: RUF001, RUF002  (the paper's Greek notation in strings and docstrings)
"""Experiment 3's figure, table and goal: measured latency against Kingman and P-K."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from nfaas.experiments.harness import figure, markdown_table, save_figure, write_csv
from nfaas.experiments.queueing import predictions

GOAL_ERROR = 0.20
PAPER_SERVICE = "μ_p ≈ 4 kpps at 5 topics (25.6 Mbit/s) with L_p = 800 B, C = L_p μ_p ≈ 25.6 Mbit/s"


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    fig = figure(6.4, 3.8)
    ax = fig.add_subplot(1, 1, 1)
    colours = {"constant": "tab:blue", "poisson": "tab:red"}
    for arrivals, colour in colours.items():
        sel = [r for r in rows if r["arrivals"] == arrivals]
        if not sel:
            continue
        rho = [r["rho"] for r in sel]
        ax.errorbar(rho, [r["measured_ms"] for r in sel],
                    yerr=[0 if math.isnan(r["measured_ci_ms"]) else r["measured_ci_ms"] for r in sel],
                    fmt="o", color=colour, capsize=3, label=f"measured, {arrivals}")  # fmt: skip
        ax.plot(
            rho, [r["kingman_ms"] for r in sel], ":", color=colour, label=f"Kingman, {arrivals}"
        )
        ax.plot(rho, [r["kingman_t0_ms"] for r in sel], "-", color=colour,
                label=f"Kingman + T_0, {arrivals}")  # fmt: skip
        if arrivals == "poisson":
            ax.plot(rho, [r["pk_t0_ms"] for r in sel], "--", color="k", label="P-K + T_0, poisson")
    ax.set_yscale("log")
    ax.set_xlabel("offered load ρ = λ / μ")
    ax.set_ylabel("mean PUBACK latency, ms")
    ax.legend(fontsize=6)
    save_figure(fig, path)


def queueing_goal(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The largest model error below saturation (ρ < 1), raw and with T_0."""
    below = [r for r in rows if r["rho"] < 1]
    raw = max(
        (min(r["kingman_error"], r.get("pk_error", math.inf)) for r in below), default=math.nan
    )
    cal = [r for r in below[1:] if r["arrivals"] == "constant"] + [
        r for r in below if r["arrivals"] == "poisson" and r["rho"] != below[0]["rho"]
    ]
    calibrated = max(
        (min(r["kingman_t0_error"], r["pk_t0_error"] if r["arrivals"] == "poisson" else math.inf)
         for r in cal), default=math.nan,
    )  # fmt: skip
    return {"raw": raw, "calibrated": calibrated,
            "met": not math.isnan(calibrated) and calibrated < GOAL_ERROR}  # fmt: skip


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def queueing_markdown(data: dict[str, Any], folder: Path, reps: str) -> str:
    rows = predictions(data)
    write_csv(folder / "ramp.csv", data["ramp"])
    write_csv(folder / "points.csv", data["points"])
    write_csv(folder / "predictions.csv", rows)
    _plot(rows, folder / "eq1-3-latency.png")
    s = data["service"]
    ramp = markdown_table(
        ["topics", "msg/s", "delivered", "broker CPU (core)", "mean latency, ms", "generator lag, ms"],
        [[r["topics"], f"{r['rate']:.0f}", f"{r['delivery']:.4%}", _fmt(r["cpu_share"]),
          _fmt(r["mean_ms"]), _fmt(r["generator_max_lag_ms"], 1)] for r in data["ramp"]],
    )  # fmt: skip
    sat = s["mu_saturation"]
    service = (
        f"Service rate: from the saturation point {f'{sat:.0f} msg/s' if sat else 'not reached'}"
        f"{' (the generator fell behind first)' if s['generator_bound'] else ''}; from the broker's "
        f"CPU {s['mu_cpu']:.0f} msg/s per CPU-second. The models use μ = {s['mu']:.0f} msg/s "
        f"({s['mu_source']}), 1/μ = {1e3 / s['mu']:.4f} ms, C = L μ = "
        f"{s['mu'] * 800 * 8 / 1e6:.1f} Mbit/s. The paper: {PAPER_SERVICE}.\n\n"
        "c_s = 1 is assumed (σ_s = 1/μ): a broker's per-message service time is not observable "
        "from outside it. c_a² is measured from the publishers' send times.\n\n"
    )
    table = markdown_table(
        ["arrivals", "ρ", "msg/s", "c_a²", "measured, ms", "Kingman, ms", "P-K, ms",
         "Kingman + T_0", "P-K + T_0", "error K / K+T_0 / PK+T_0"],
        [[r["arrivals"], r["rho"], f"{r['rate']:.0f}", _fmt(r["ca2"], 2),
          f"{_fmt(r['measured_ms'])} ± {_fmt(r['measured_ci_ms'])}", _fmt(r["kingman_ms"], 4),
          _fmt(r["pk_ms"], 4), _fmt(r["kingman_t0_ms"]), _fmt(r["pk_t0_ms"]),
          f"{r['kingman_error']:.0%} / {r['kingman_t0_error']:.0%} / "
          f"{'n/a' if math.isnan(r['pk_t0_error']) else format(r['pk_t0_error'], '.0%')}"]
         for r in rows],
    )  # fmt: skip
    goal = queueing_goal(rows)
    verdict = (
        f"\nLargest error below saturation: {goal['raw']:.0%} for the models as the paper writes "
        f"them (eq. 2), {goal['calibrated']:.0%} with T_0 added (the lightest load of each "
        "arrival process, where T_0 was fitted, left out).\n"
    )
    return (
        f"{reps}; broker form: {data['form']}.\n\nThe saturation ramp (constant arrivals):\n\n"
        + ramp
        + "\n"
        + service
        + table
        + verdict
        + "\n![latency against the models](eq1-3-latency.png)\n"
    )
