"""Experiment 2 (the paper's Fig. 9-11, Table 4): a broker VNF against a constant load.

mosquitto (MQTT QoS 1; its PUBACK plays Kafka's ACK) runs in each sandbox form
that can host a server here (``broker.make_broker``); the microVM and Wasm
forms are reported as unable to, with the reason. For each form, each
repetition sweeps the topic counts: 800-byte messages at 5.12 Mbit/s per topic,
batch 1, for ``duration_s`` each (the paper: 5 minutes), a message lost when its
PUBACK misses ``ack_timeout_s``. Per point: delivery ratio, the broker's CPU
share of a core (the sandbox's own accounting), acknowledgement latency p50 and
p95, and CPU per Mbit/s; their 95% confidence intervals are over repetitions.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from nfaas.errors import NfaasError
from nfaas.experiments.broker import UNHOSTABLE, make_broker
from nfaas.experiments.harness import ci95
from nfaas.experiments.load import RATE_PER_TOPIC, LoadPoint, offer_load
from nfaas.experiments.profiles import BrokerProfile

KPIS = ("delivery", "cpu_share", "p50_ms", "p95_ms", "mean_ms", "cpu_per_mbit")


def point_row(form: str, rep: int, topics: int, point: LoadPoint) -> dict[str, Any]:
    """One repetition of one load point, as it goes into the CSV."""
    mbit = point.offered_mbit_s
    return {
        "form": form, "rep": rep, "topics": topics, "offered_mbit_s": round(mbit, 3),
        "sent": point.sent, "delivered": point.delivered, "delivery": point.delivery,
        "cpu_share": point.cpu_share, "cpu_per_mbit": point.cpu_share / mbit,
        "p50_ms": point.percentile_ms(50), "p95_ms": point.percentile_ms(95),
        "mean_ms": point.mean_ms(), "broker_memory_mb": point.broker_memory_bytes / (1 << 20),
        "generator_max_lag_ms": point.generator_max_lag_s * 1e3,
        "generator_cpu_s": point.generator_cpu_s,
    }  # fmt: skip


async def sweep_form(form: str, prof: BrokerProfile, folder: Path) -> list[dict[str, Any]]:
    """Every repetition of every topic count on one broker of ``form``."""
    rows = []
    async with make_broker(form) as broker:
        for rep in range(prof.reps):
            for topics in prof.topics:
                point = await offer_load(
                    broker, topics, topics * RATE_PER_TOPIC, "constant", prof.duration_s,
                    prof.ack_timeout_s, folder, seed=rep + 1,
                )  # fmt: skip
                rows.append(point_row(form, rep, topics, point))
    return rows


async def run_broker_load(prof: BrokerProfile) -> dict[str, Any]:
    """The rows of every hostable form, and why the others are not measured."""
    rows: list[dict[str, Any]] = []
    skipped = dict(UNHOSTABLE)
    with tempfile.TemporaryDirectory(prefix="nfaas-experiment-") as tmp:
        for form in prof.forms:
            try:
                rows += await sweep_form(form, prof, Path(tmp) / form)
            except NfaasError as exc:
                skipped[form] = f"failed: {exc.detail}"
    return {"rows": rows, "not_measured": skipped}


def summarise(rows: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """(form, topics) -> KPI -> Estimate over repetitions."""
    keys = sorted({(r["form"], r["topics"]) for r in rows})
    return {
        key: {kpi: ci95(r[kpi] for r in rows if (r["form"], r["topics"]) == key) for kpi in KPIS}
        for key in keys
    }
