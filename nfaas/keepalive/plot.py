"""The trade-off curve, drawn as "Serverless in the Wild" draws it (Fig. 15).

One line per policy, one point per value of its sweep parameter: cold-start
share against wasted memory-time, the latter relative to the fixed 10-minute
keep-alive when it is among the results (the paper's normalisation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from nfaas.keepalive.simulator import PolicyResult

_MARKERS = {"fixed": "o", "hybrid": "s", "forecast": "^", "never": "x"}


def baseline(curves: Mapping[str, Sequence[PolicyResult]]) -> PolicyResult | None:
    """The fixed 10-minute result, when the fixed curve has it."""
    for result in curves.get("fixed", ()):
        if result.parameters.get("keep_alive_min") == 10.0:
            return result
    return None


def tradeoff_figure(
    curves: Mapping[str, Sequence[PolicyResult]], path: Path, *, title: str = ""
) -> Path:
    """Write the figure as PNG to ``path``; it is the caller's to keep."""
    import matplotlib

    matplotlib.use("Agg")  # no display on an edge node or in CI
    import matplotlib.pyplot as plt

    base = baseline(curves)
    scale = 100.0 / base.wasted_gb_hours if base and base.wasted_gb_hours else 1.0
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    panels = (
        ("cold_share", "cold starts, share of invocations (%)"),
        ("cold_share_p75", "cold-start share of the 75th-percentile function (%)"),
    )
    for ax, (field, label) in zip(axes, panels, strict=True):
        for name, results in curves.items():
            ordered = sorted(results, key=lambda r: r.wasted_gb_hours)
            ax.plot(
                [r.wasted_gb_hours * scale for r in ordered],
                [getattr(r, field) * 100 for r in ordered],
                marker=_MARKERS.get(name, "."),
                label=name,
            )
        if base is not None:
            ax.scatter(
                [100.0], [getattr(base, field) * 100], s=120, facecolors="none",
                edgecolors="black", zorder=5, label="fixed 10 min",
            )  # fmt: skip
        ax.set_xlabel(
            "wasted memory-time (% of fixed 10 min)" if base else "wasted memory-time (GB-hours)"
        )
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
