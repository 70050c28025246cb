from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from nfaas.cli.main import app
from tests.keepalive.test_azure import write_day

runner = CliRunner()


def test_simulate_synthetic_prints_every_default_policy() -> None:
    result = runner.invoke(
        app, ["keepalive", "simulate", "--functions", "20", "--synthetic-days", "0.2"]
    )
    assert result.exit_code == 0, result.output
    for name in ("never", "fixed:keep_alive_min=60", "hybrid", "forecast"):
        assert name in result.output


def test_simulate_json_with_chosen_policies() -> None:
    result = runner.invoke(
        app,
        ["keepalive", "simulate", "--functions", "10", "--synthetic-days", "0.1", "--periodic",
         "--policy", "fixed:keep_alive_min=5", "--policy", "hybrid:range_min=60", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["spec"] for r in rows] == ["fixed:keep_alive_min=5", "hybrid:range_min=60"]
    assert rows[0]["parameters"] == {"keep_alive_min": 5.0}


def test_simulate_refuses_a_bad_parameter_and_a_bad_trace(tmp_path: Path) -> None:
    result = runner.invoke(app, ["keepalive", "simulate", "--policy", "hybrid:margin=3"])
    assert result.exit_code == 1
    assert "margin must be in [0, 0.99], not 3" in result.output
    write_day(tmp_path, 1, ["o,a,f,http,1"])
    result = runner.invoke(app, ["keepalive", "simulate", "--trace", str(tmp_path)])
    assert result.exit_code == 1
    assert "line 2: 5 fields, not 1444" in result.output


def test_plot_writes_a_png(tmp_path: Path) -> None:
    out = tmp_path / "curve.png"
    result = runner.invoke(
        app,
        ["keepalive", "plot", "-o", str(out), "--functions", "10", "--synthetic-days", "0.1",
         "--policy", "fixed", "--policy", "hybrid"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"\x89PNG"
