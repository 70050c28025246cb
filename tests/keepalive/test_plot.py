from __future__ import annotations

from pathlib import Path

from nfaas.keepalive.plot import baseline, tradeoff_figure
from nfaas.keepalive.simulator import sweep
from nfaas.keepalive.synthetic import SyntheticConfig, synthetic_trace


def test_tradeoff_figure_is_a_png_normalised_to_fixed_ten_minutes(tmp_path: Path) -> None:
    trace = synthetic_trace(SyntheticConfig(functions=30, days=0.25, seed=4))
    curves = {"fixed": sweep(trace, "fixed", [5, 10, 30]), "hybrid": sweep(trace, "hybrid", [30])}
    assert baseline(curves) is curves["fixed"][1]
    path = tradeoff_figure(curves, tmp_path / "out" / "tradeoff.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
