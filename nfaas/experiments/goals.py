"""Issue 8's goals, judged from the data an output folder holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nfaas.experiments.harness import markdown_table


def _data(out: Path, name: str) -> Any:
    path = out / name / "data.json"
    return json.loads(path.read_text()) if path.exists() else None


def goal_rows(out: Path) -> list[dict[str, Any]]:
    """Every goal with its value and whether it is met; absent experiments give no rows."""
    from nfaas.experiments.broker_load import summarise
    from nfaas.experiments.broker_report import broker_goals
    from nfaas.experiments.queueing import predictions
    from nfaas.experiments.queueing_report import GOAL_ERROR, queueing_goal

    rows: list[dict[str, Any]] = []
    broker = _data(out, "broker")
    if broker and broker["rows"]:
        rows += broker_goals(summarise(broker["rows"]))
    queueing = _data(out, "queueing")
    if queueing and queueing["points"]:
        goal = queueing_goal(predictions(queueing))
        value = f"{goal['calibrated']:.0%} with T_0 ({goal['raw']:.0%} as eq. 2 stands)"
        rows.append({"form": queueing["form"], "goal": f"model error < {GOAL_ERROR:.0%} below "
                     "saturation", "value": value, "met": goal["met"]})  # fmt: skip
    return rows


def goals_markdown(out: Path) -> str:
    rows = goal_rows(out)
    if not rows:
        return "No experiment with a goal has run yet.\n"
    return markdown_table(
        ["goal", "form", "value", "met"],
        [[r["goal"], r["form"], r["value"], "yes" if r["met"] else "**no**"] for r in rows],
    )
