"""``nfaas experiment`` end to end on a profile of seconds: data, figures, report, goals."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from nfaas.cli.main import app
from nfaas.experiments.profiles import (
    BrokerProfile,
    FootprintProfile,
    Profile,
    QueueingProfile,
)
from nfaas.experiments.runner import EXPERIMENTS, run_experiment
from nfaas.sandboxes.container import ContainerBackend
from tests.requirements import require

#: seconds, not minutes: the microVM has a test of its own (test_footprint_microvm.py)
SECONDS = Profile(
    "tiny",
    FootprintProfile(("process", "container", "wasm"), 2, 1, 0, 1, 0.02, 0.05),
    BrokerProfile(("process", "container"), (1, 5), 0.3, 2),
    QueueingProfile("process", (2, 5), 0.3, (0.2, 0.4), 0.3, 2),
)


async def test_every_experiment_writes_its_data_figures_and_report(tmp_path: Path) -> None:
    require(ContainerBackend.availability(), "the container experiments")
    for name in EXPERIMENTS:
        await run_experiment(name, SECONDS, tmp_path)
    report = (tmp_path / "README.md").read_text()
    for title in EXPERIMENTS.values():
        assert f"## {title}" in report
    assert "Intel" in report or "AMD" in report or "cpu_model" in report
    assert "no network device" in report and "no sockets" in report  # microVM, Wasm: said why
    assert "71" in report and "0.034" in report  # the paper's figures beside ours
    for name in EXPERIMENTS:
        assert json.loads((tmp_path / name / "data.json").read_text())
    figures = list(tmp_path.glob("*/*.png"))
    assert len(figures) == 6
    assert all(0 < f.stat().st_size <= 150_000 for f in figures)
    broker = json.loads((tmp_path / "broker" / "data.json").read_text())
    assert {r["form"] for r in broker["rows"]} == {"process", "container"}
    assert all(r["delivery"] == 1.0 for r in broker["rows"])
    assert "| delivery 100% up to 5 topics | process |" in report


def test_the_command_refuses_unknown_names_and_profiles(tmp_path: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["experiment", "nope", "--out", str(tmp_path)])
    assert done.exit_code == 1 and "no experiment 'nope'" in done.output
    done = runner.invoke(app, ["experiment", "footprint", "--profile", "huge"])
    assert done.exit_code != 0
