"""``nfaas keepalive``: compare keep-alive policies on traces, and see the live decisions.

``simulate`` and ``plot`` run offline, on the Azure Functions 2019 trace files
of a folder (``--trace``) or on a synthetic trace; ``show`` asks the platform.
The shared helpers (client, error printing, tables) live in
``nfaas.cli.main``, imported when a command runs, since ``main`` registers
this group.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from nfaas.keepalive.simulator import PolicyResult
    from nfaas.keepalive.trace import Trace

keepalive_app = typer.Typer(no_args_is_help=True, help="Keep-alive and pre-warm policies.")

TraceOpt = Annotated[
    Path | None,
    typer.Option("--trace", help="folder with Azure 2019 trace files (default: synthetic)"),
]
DaysOpt = Annotated[int | None, typer.Option("--days", help="read only the first N days")]
UnitOpt = Annotated[str, typer.Option("--unit", help="function or application")]
FunctionsOpt = Annotated[int, typer.Option("--functions", help="synthetic: functions")]
SynthDaysOpt = Annotated[float, typer.Option("--synthetic-days", help="synthetic: days")]
SeedOpt = Annotated[int, typer.Option("--seed", help="synthetic: random seed")]
PeriodicOpt = Annotated[
    bool, typer.Option("--periodic", help="synthetic: mostly timers and periodic batches")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print raw JSON")]

DEFAULT_POLICIES = ["never", "fixed", "fixed:keep_alive_min=60", "hybrid", "forecast"]
_COLUMNS = ["policy", "cold_%", "p75_%", "p99_%", "wasted_GBh", "modes", "fn_days_per_s"]


def load_trace(
    trace: Path | None, days: int | None, unit: str, functions: int, sdays: float, seed: int,
    periodic: bool,
) -> Trace:  # fmt: skip
    from nfaas.errors import InvalidRequest

    if trace is not None:
        from nfaas.keepalive.azure import find_files, read_trace

        if unit not in ("function", "application"):
            raise InvalidRequest(f"--unit is function or application, not {unit!r}")
        return read_trace(find_files(trace, days), unit)  # type: ignore[arg-type]
    from nfaas.keepalive.synthetic import PERIODIC_MIX, SyntheticConfig, synthetic_trace

    config = SyntheticConfig(functions=functions, days=sdays, seed=seed)
    if periodic:
        config = SyntheticConfig(functions=functions, days=sdays, seed=seed, mix=dict(PERIODIC_MIX))
    return synthetic_trace(config)


def _row(result: PolicyResult, spec: str) -> dict[str, Any]:
    return {
        "policy": spec,
        "cold_%": f"{result.cold_share * 100:.2f}",
        "p75_%": f"{result.cold_share_p75 * 100:.1f}",
        "p99_%": f"{result.cold_share_p99 * 100:.1f}",
        "wasted_GBh": f"{result.wasted_gb_hours:.1f}",
        "modes": ", ".join(f"{k} {v}" for k, v in sorted(result.modes.items())),
        "fn_days_per_s": f"{result.unit_days_per_second:.0f}",
    }


@keepalive_app.command("simulate")
def simulate_cmd(
    policy: Annotated[
        list[str] | None,
        typer.Option("--policy", help="name[:param=value,...]; repeat (default: all, baseline 10 min)"),
    ] = None,
    trace: TraceOpt = None, days: DaysOpt = None, unit: UnitOpt = "function",
    functions: FunctionsOpt = 200, synthetic_days: SynthDaysOpt = 1.0, seed: SeedOpt = 0,
    periodic: PeriodicOpt = False, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Replay a trace under each policy: cold-start share, its 75th/99th percentile, waste."""
    from nfaas.cli.main import fail, out, table
    from nfaas.errors import NfaasError
    from nfaas.keepalive.registry import make_policy, parse_spec
    from nfaas.keepalive.simulator import simulate

    try:
        specs = [(spec, *parse_spec(spec)) for spec in policy or DEFAULT_POLICIES]
        data = load_trace(trace, days, unit, functions, synthetic_days, seed, periodic)
        results = [(spec, simulate(data, make_policy(n, p))) for spec, n, p in specs]
    except NfaasError as exc:
        fail(exc.detail)
    if as_json:
        out.print_json(json.dumps([r.as_dict() | {"spec": s} for s, r in results]))
        return
    out.print(
        f"{data.units} units over {data.days:g} days, {data.invocations} invocations",
        highlight=False,
    )
    table([_row(r, s) for s, r in results], _COLUMNS, False, "keep-alive policies")


@keepalive_app.command("plot")
def plot_cmd(
    output: Annotated[Path, typer.Option("-o", "--output", help="the PNG file to write")],
    policy: Annotated[
        list[str] | None, typer.Option("--policy", help="policy to sweep; repeat (default: all)")
    ] = None,
    trace: TraceOpt = None, days: DaysOpt = None, unit: UnitOpt = "function",
    functions: FunctionsOpt = 200, synthetic_days: SynthDaysOpt = 1.0, seed: SeedOpt = 0,
    periodic: PeriodicOpt = False,
) -> None:  # fmt: skip
    """Sweep each policy's parameter and draw cold starts against wasted memory-time."""
    from nfaas.cli.main import fail, out
    from nfaas.errors import NfaasError
    from nfaas.keepalive.plot import tradeoff_figure
    from nfaas.keepalive.registry import make_policy
    from nfaas.keepalive.simulator import sweep

    names = policy or ["fixed", "hybrid", "forecast"]
    try:
        for name in names:
            make_policy(name)
        data = load_trace(trace, days, unit, functions, synthetic_days, seed, periodic)
        curves = {name: sweep(data, name) for name in names}
    except NfaasError as exc:
        fail(exc.detail)
    source = str(trace) if trace else f"synthetic, seed {seed}{', periodic' if periodic else ''}"
    tradeoff_figure(curves, output, title=f"{data.units} units, {data.days:g} days ({source})")
    out.print(f"wrote {output}", highlight=False)


@keepalive_app.command("show")
def show_cmd(
    url: Annotated[str | None, typer.Option("--url", help="API address")] = None,
    token: Annotated[str | None, typer.Option("--token", help="bearer token")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The live decision of every function whose descriptor names a policy."""
    from nfaas.cli.main import call, client, table

    c = client(url, token)
    rows = call(lambda: c.json("GET", "/api/v1/keepalive"))
    columns = ["app", "function", "version", "policy", "mode", "prewarm_s", "keepalive_s",
               "ready", "window_start_in_s", "window_end_in_s"]  # fmt: skip
    table(rows, columns, as_json, "keep-alive decisions")
