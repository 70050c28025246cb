# ruff: noqa: RUF002  (the paper's Greek notation in strings and docstrings)
"""Experiment 3 (the paper's equations 1-3): the broker as a single-server queue.

1. **Service rate.** A constant-rate ramp (``ramp_topics``) finds the
   saturation point as the paper does: the highest rate still delivered
   (≥ 99.5%) before losses or a latency blow-up (mean over ``BLOWUP`` times the
   lightest point's) begin; there λ ≈ μ. Beside it, μ from the broker's own CPU
   accounting: messages per CPU-second of the broker. If the ramp ends without
   saturating, or the generator falls behind first, the CPU figure is used and
   the report says so.
2. **Models.** Kingman (eq. 1) with c_a measured from the publishers' send times
   and P-K (eq. 3, Poisson only); T_s = T_w + 1/μ (eq. 2). The service time's
   variation is not observable from outside the broker: c_s = 1 is assumed
   (σ_s = 1/μ), which is stated in the report.
3. **Measured.** The mean PUBACK latency at loads ρ = λ/μ, with constant and
   Poisson arrivals. It also holds a fixed part the models leave out (loopback,
   kernel, the client): ``T_0``, taken as the measured minus the predicted mean
   at the lightest load, is added to a second, calibrated prediction.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from nfaas.experiments.broker import make_broker
from nfaas.experiments.harness import ci95
from nfaas.experiments.load import RATE_PER_TOPIC, LoadPoint, offer_load
from nfaas.experiments.profiles import QueueingProfile
from nfaas.experiments.publisher import Arrivals

SATURATED_DELIVERY = 0.995
BLOWUP = 20.0
#: a generator this far behind its schedule no longer offers the planned load
GENERATOR_LAG_S = 0.05
ARRIVALS: tuple[Arrivals, ...] = ("constant", "poisson")


def kingman_wait(lam: float, mu: float, ca2: float, cs2: float) -> float:
    """Eq. 1: T_w ≈ (ρ / (1 - ρ)) ((c_a² + c_s²) / 2) (1 / μ); inf at or past saturation."""
    rho = lam / mu
    return math.inf if rho >= 1 else rho / (1 - rho) * (ca2 + cs2) / 2 / mu


def pk_wait(lam: float, mu: float, var_s: float) -> float:
    """Eq. 3 (Pollaczek-Khinchine, M/G/1): T_w = λ (σ_s² + 1/μ²) / (2 (1 - ρ))."""
    rho = lam / mu
    return math.inf if rho >= 1 else lam * (var_s + 1 / mu**2) / (2 * (1 - rho))


def arrival_cv2(sends: list[np.ndarray]) -> float:
    """The squared coefficient of variation of the gaps between sends, all publishers merged:
    the arrival process the broker sees."""
    gaps = np.diff(np.sort(np.concatenate(sends))) if sends else np.asarray([])
    return float(gaps.var() / gaps.mean() ** 2) if len(gaps) > 1 and gaps.mean() > 0 else math.nan


def _ramp_row(topics: int, point: LoadPoint) -> dict[str, Any]:
    return {
        "topics": topics, "rate": point.offered_rate, "delivery": point.delivery,
        "cpu_share": point.cpu_share, "mean_ms": point.mean_ms(),
        "generator_max_lag_ms": point.generator_max_lag_s * 1e3,
    }  # fmt: skip


def service_rate(ramp: list[dict[str, Any]]) -> dict[str, Any]:
    """μ from the saturation point and from the broker's CPU, and which one the models use."""
    per_cpu = [r["rate"] / r["cpu_share"] for r in ramp if r["cpu_share"] > 0]
    mu_cpu = float(np.median(per_cpu)) if per_cpu else math.nan
    light = ramp[0]["mean_ms"]
    last_good, saturated, generator_bound = None, False, False
    for r in ramp:
        if r["generator_max_lag_ms"] > GENERATOR_LAG_S * 1e3:
            generator_bound = True
        if r["delivery"] < SATURATED_DELIVERY or r["mean_ms"] > BLOWUP * light:
            saturated = True
            break
        last_good = r["rate"]
    use_sat = saturated and not generator_bound and last_good is not None
    return {
        "mu_saturation": last_good if saturated else None,
        "mu_cpu": mu_cpu,
        "saturated": saturated,
        "generator_bound": generator_bound,
        "mu": float(last_good) if use_sat and last_good else mu_cpu,
        "mu_source": "saturation point" if use_sat else "broker CPU per message",
    }


async def run_queueing(prof: QueueingProfile) -> dict[str, Any]:
    ramp: list[dict[str, Any]] = []
    points: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="nfaas-experiment-") as tmp:
        async with make_broker(prof.form) as broker:
            for topics in prof.ramp_topics:
                point = await offer_load(broker, topics, topics * RATE_PER_TOPIC, "constant",
                                         prof.ramp_duration_s, 1.0, Path(tmp))  # fmt: skip
                ramp.append(_ramp_row(topics, point))
            mu = service_rate(ramp)
            for rep in range(prof.reps):
                for rho in prof.loads:
                    for arrivals in ARRIVALS:
                        lam = rho * mu["mu"]
                        topics = max(1, math.ceil(lam / RATE_PER_TOPIC))
                        point = await offer_load(broker, topics, lam, arrivals, prof.duration_s,
                                                 1.0, Path(tmp), seed=rep + 1)  # fmt: skip
                        points.append({
                            "rep": rep, "rho": rho, "arrivals": arrivals, "rate": lam,
                            "mean_ms": point.mean_ms(), "delivery": point.delivery,
                            "ca2": arrival_cv2(point.sends), "cpu_share": point.cpu_share,
                            "generator_max_lag_ms": point.generator_max_lag_s * 1e3,
                        })  # fmt: skip
    return {"form": prof.form, "ramp": ramp, "service": mu, "points": points}


def predictions(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Per (arrivals, ρ): the measured mean (CI over reps) and each model's T_s, in ms."""
    mu = data["service"]["mu"]
    out = []
    for arrivals in ARRIVALS:
        for rho in sorted({p["rho"] for p in data["points"]}):
            reps = [p for p in data["points"] if p["arrivals"] == arrivals and p["rho"] == rho]
            if not reps:
                continue
            measured = ci95(p["mean_ms"] for p in reps)
            ca2 = float(np.nanmean([p["ca2"] for p in reps]))
            lam = rho * mu
            row = {"arrivals": arrivals, "rho": rho, "rate": lam, "ca2": ca2,
                   "measured_ms": measured.mean, "measured_ci_ms": measured.half_width,
                   "kingman_ms": (kingman_wait(lam, mu, ca2, 1.0) + 1 / mu) * 1e3,
                   "pk_ms": (pk_wait(lam, mu, 1 / mu**2) + 1 / mu) * 1e3
                   if arrivals == "poisson" else math.nan}  # fmt: skip
            out.append(row)
    for arrivals in ARRIVALS:
        rows = [r for r in out if r["arrivals"] == arrivals]
        if not rows:
            continue
        t0 = rows[0]["measured_ms"] - rows[0]["kingman_ms"]  # calibrated at the lightest load
        for r in rows:
            r["t0_ms"] = t0
            r["kingman_t0_ms"] = r["kingman_ms"] + t0
            r["pk_t0_ms"] = r["pk_ms"] + t0
            for model in ("kingman", "pk", "kingman_t0", "pk_t0"):
                r[f"{model}_error"] = abs(r[f"{model}_ms"] - r["measured_ms"]) / r["measured_ms"]
    return out
