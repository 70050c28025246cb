"""Experiment 4 (sections 3 and 5.2.2): the IoT scenarios' latency budgets against each backend.

From experiment 1 (the cold start: deployment to the function's first line)
and experiment 2 (the broker's service time: mean PUBACK latency at 5 topics),
with the paper's 4G figures (Ref. [51]: uplink 28.84 ms, downlink 18.63 ms) and
T_RNIS = 4.5 ms (the paper's 4-5 ms), it computes the C-V2X budget
T_up,max = T_uplink + T_RNIS + T_boot + T_s, the round trip with T_downlink, the
distance a vehicle at 120 km/h covers meanwhile, and which scenarios of
section 3 each backend fits cold (instantiated by the event) and warm.
"""

from __future__ import annotations

from typing import Any

from nfaas.experiments.harness import ci95, markdown_table

T_UPLINK_MS = 28.84
T_DOWNLINK_MS = 18.63
T_RNIS_MS = 4.5
SPEED_KMH = 120.0
#: the paper's own budget: Firecracker's boot and ~3 ms of service (section 5.2.2)
PAPER_BOOT_MS = 71.0
PAPER_SERVICE_MS = 3.0
#: section 3's end-to-end latency requirements, ms (the tightest of each range)
SCENARIOS = (
    ("IoV: sensor information sharing (uRLLC end)", 3.0),
    ("IoV: V2N mMTC (remote monitoring, cooperative awareness)", 100.0),
    ("IoV: sensor information sharing (mMTC end)", 1000.0),
    ("Smart manufacturing: real-time control", 2.0),
    ("Smart health: images and video, eMBB", 20.0),
    ("Smart health: relaxed monitoring", 100.0),
    ("Smart grid: video surveillance", 200.0),
    ("Smart grid: sensor monitoring", 1000.0),
)


def metres(ms: float) -> float:
    return SPEED_KMH / 3.6 * ms / 1e3


def budget(boot_ms: float, service_ms: float) -> dict[str, float]:
    up = T_UPLINK_MS + T_RNIS_MS + boot_ms + service_ms
    rtt = up + T_DOWNLINK_MS
    return {
        "t_up_max_ms": up,
        "round_trip_ms": rtt,
        "up_m": metres(up),
        "round_trip_m": metres(rtt),
    }


def _service_ms(broker: dict[str, Any] | None, form: str) -> tuple[float, str]:
    """Mean PUBACK latency at the point nearest 5 topics, of ``form`` or else the process form."""
    rows = (broker or {}).get("rows", [])
    for candidate in (form, "process"):
        mine = [r for r in rows if r["form"] == candidate]
        if mine:
            at = min({r["topics"] for r in mine}, key=lambda t: abs(t - 5))
            value = ci95(r["mean_ms"] for r in mine if r["topics"] == at).mean
            source = "" if candidate == form else " (process form's: this form hosts no server)"
            return value, f"{at} topics{source}"
    return PAPER_SERVICE_MS, "the paper's"


def scenario_rows(footprint: dict[str, Any], broker: dict[str, Any] | None) -> list[dict[str, Any]]:
    rows = [{"backend": "paper: Kata + Firecracker", "boot_ms": PAPER_BOOT_MS,
             "service_ms": PAPER_SERVICE_MS, "service_from": "section 5.2.2",
             **budget(PAPER_BOOT_MS, PAPER_SERVICE_MS)}]  # fmt: skip
    for name, result in footprint.items():
        boots = result.get("boots")
        if not boots:
            continue
        boot = ci95(b["first_line_ms"] for b in boots).mean
        service, source = _service_ms(broker, name)
        rows.append({"backend": name, "boot_ms": boot, "service_ms": service,
                     "service_from": source, **budget(boot, service)})  # fmt: skip
    return rows


def _fits(row: dict[str, Any], limit_ms: float) -> str:
    warm = T_UPLINK_MS + row["service_ms"] + T_DOWNLINK_MS
    cold = row["round_trip_ms"]
    if cold <= limit_ms:
        return "yes"
    return "warm only" if warm <= limit_ms else "no"


def scenarios_markdown(rows: list[dict[str, Any]]) -> str:
    budget_table = markdown_table(
        ["backend", "T_boot (cold start), ms", "T_s, ms", "T_s from", "T_up,max, ms", "metres at 120 km/h",
         "+ T_downlink, ms", "metres"],
        [[r["backend"], f"{r['boot_ms']:.1f}", f"{r['service_ms']:.3f}", r["service_from"],
          f"{r['t_up_max_ms']:.1f}", f"{r['up_m']:.2f}", f"{r['round_trip_ms']:.1f}",
          f"{r['round_trip_m']:.2f}"] for r in rows],
    )  # fmt: skip
    fit = markdown_table(
        ["scenario (section 3)", "E2E limit, ms", *[r["backend"] for r in rows]],
        [[name, f"{limit:g}", *[_fits(r, limit) for r in rows]] for name, limit in SCENARIOS],
    )
    return (
        f"T_uplink = {T_UPLINK_MS} ms, T_downlink = {T_DOWNLINK_MS} ms (4G, the paper's Ref. [51]), "
        f"T_RNIS = {T_RNIS_MS} ms. T_boot is the measured cold start (deployment to the "
        "function's first line, experiment 1); T_s the broker's mean PUBACK latency near "
        "25 Mbit/s (experiment 2). The paper finds T_up,max ≈ 100-110 ms (< 4 m) and a round "
        "trip of 120-130 ms (< 4.5 m).\n\n"
        + budget_table
        + "\nDoes a cold start (uplink + RNIS + boot + service + downlink) fit the scenario's "
        'end-to-end limit? "warm only": only an instance already running fits.\n\n' + fit
    )
