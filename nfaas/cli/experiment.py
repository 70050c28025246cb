"""``nfaas experiment``: the IoT paper's evaluation (section 5.2) on this machine.

``nfaas experiment footprint|broker|queueing|scenarios|all [--profile quick|full]
[--out DIR]`` measures on the sandbox backends directly (no platform needs to
run) and writes raw data, PNG figures and a Markdown report to ``DIR``
(``docs/experiments.md`` says what each experiment does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

PROFILES = ("tiny", "quick", "full")


def experiment(
    name: Annotated[str, typer.Argument(help="footprint, broker, queueing, scenarios or all")],
    profile: Annotated[
        str, typer.Option("--profile", help="quick: minutes; full: the paper's durations")
    ] = "quick",
    out: Annotated[Path, typer.Option("--out", help="output folder")] = Path("experiments-out"),
) -> None:
    """Reproduce the IoT paper's evaluation (section 5.2): data, figures and a report."""
    import asyncio

    from nfaas.errors import NfaasError
    from nfaas.experiments.profiles import profile as make_profile
    from nfaas.experiments.runner import EXPERIMENTS, run_experiment

    if profile not in PROFILES:
        raise typer.BadParameter(f"--profile must be one of {', '.join(PROFILES)}")
    names = list(EXPERIMENTS) if name == "all" else [name]
    chosen = make_profile(profile)  # type: ignore[arg-type]  # checked just above
    try:
        for each in names:
            typer.echo(f"experiment {each} ({profile}) ...", err=True)
            asyncio.run(run_experiment(each, chosen, out))
    except NfaasError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"report: {out / 'README.md'}")
