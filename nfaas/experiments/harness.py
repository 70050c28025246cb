"""What every experiment shares: confidence intervals, the machine, raw data, plots, Markdown.

An experiment writes into its own folder of the output folder: ``data.json``
(every repetition's raw figures), optional CSV files, PNG figures and a
``report.md`` section, which ``write_report`` gathers into one ``README.md``
with the machine it ran on.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

#: two-sided 95% confidence intervals throughout, as the paper's Fig. 9
CONFIDENCE = 0.95


@dataclass(frozen=True, slots=True)
class Estimate:
    """A mean over repetitions with its Student-t 95% confidence interval."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def as_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "ci_low": self.low, "ci_high": self.high, "n": self.n}

    def text(self, scale: float = 1.0, digits: int = 2) -> str:
        """``mean ± half-width``, or the mean alone for one repetition."""
        if self.n == 0 or math.isnan(self.mean):
            return "n/a"
        mean = f"{self.mean * scale:.{digits}f}"
        if self.n < 2 or math.isnan(self.half_width):
            return mean
        return f"{mean} ± {self.half_width * scale:.{digits}f}"


def ci95(values: Iterable[float]) -> Estimate:
    data = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    n = len(data)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mean = float(data.mean())
    if n < 2:
        return Estimate(mean, math.nan, math.nan, 1)
    half = float(scipy_stats.t.ppf((1 + CONFIDENCE) / 2, n - 1) * data.std(ddof=1) / math.sqrt(n))
    return Estimate(mean, mean - half, mean + half, n)


# -- the machine -------------------------------------------------------------------------------


def _cpu_model() -> tuple[str, bool]:
    model, virtual = "unknown", False
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.partition(":")[2].strip()
            elif line.startswith("flags") and " hypervisor" in line:
                virtual = True
    except OSError:
        pass
    return model, virtual


def _version(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None and not Path(argv[0]).exists():
        return "not installed"
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def describe_machine() -> dict[str, Any]:
    """CPU model, cores, memory, kernel, the microVM accelerator and the tools' versions."""
    from nfaas.sandboxes.microvm.qemu import choose_accelerator

    model, virtual = _cpu_model()
    accelerator = choose_accelerator()
    memory_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kb = int(line.split()[1])
    return {
        "cpu_model": model,
        "cores": len(os.sched_getaffinity(0)),
        "virtualised": virtual,
        "memory_gib": round(memory_kb / (1 << 20), 1),
        "kernel": platform.release(),
        "accelerator": f"{accelerator.name} ({accelerator.why})",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "mosquitto": _version(["/usr/sbin/mosquitto", "-h"]),
        "runc": _version(["runc", "--version"]),
        "qemu": _version(["qemu-system-x86_64", "--version"]),
    }


def machine_markdown(machine: dict[str, Any]) -> str:
    rows = [[key, str(value)] for key, value in machine.items()]
    return markdown_table(["", "this machine"], rows)


# -- output ------------------------------------------------------------------------------------


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        path.write_text("")
        return
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def figure(width: float = 6.4, height: float = 3.6) -> Any:
    """A new matplotlib figure on the Agg backend (no display)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot.figure(figsize=(width, height))


def save_figure(fig: Any, path: Path) -> None:
    """A small PNG (well under 150 kB at 90 dpi) and the figure freed."""
    from matplotlib import pyplot

    fig.tight_layout()
    fig.savefig(path, dpi=90)
    pyplot.close(fig)
