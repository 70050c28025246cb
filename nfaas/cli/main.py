"""The ``nfaas`` command."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from nfaas.cli.client import ApiError, Client, resolve_target

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Serverless network functions on the edge."
)
package_app = typer.Typer(no_args_is_help=True, help="Build and check packages offline.")
packages_app = typer.Typer(
    no_args_is_help=True, help="Onboarded packages (SOL005 package management)."
)
runtimes_app = typer.Typer(
    help="The FaaS Runtime Software Repository.", invoke_without_command=True
)
pools_app = typer.Typer(help="Runtime resource pools.", invoke_without_command=True)
token_app = typer.Typer(no_args_is_help=True, help="API tokens.")
app.add_typer(package_app, name="package")
app.add_typer(packages_app, name="packages")
app.add_typer(runtimes_app, name="runtimes")
app.add_typer(pools_app, name="pools")
app.add_typer(token_app, name="token")

# Piped output is not cut to 80 columns: scripts and tests read whole lines.
_width = None if sys.stdout.isatty() else 200
out = Console(soft_wrap=True, width=_width)
err = Console(stderr=True, soft_wrap=True)

UrlOpt = Annotated[
    str | None,
    typer.Option("--url", help="API address (default: NFAAS_URL, config, local platform)"),
]
TokenOpt = Annotated[
    str | None,
    typer.Option("--token", help="bearer token (default: NFAAS_TOKEN, config, local operator)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print raw JSON")]


def client(url: str | None, token: str | None) -> Client:
    return Client(resolve_target(url, token, os.environ))


def fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def call(fn: Any) -> Any:
    try:
        return fn()
    except ApiError as exc:
        problem = exc.problem
        text = str(problem.get("detail") or problem.get("title") or f"HTTP {exc.status}")
        title = problem.get("title")
        if title and title not in text:
            text = f"{title}: {text}"
        for item in problem.get("errors") or []:
            text += f"\n  {item.get('loc')}: {item.get('msg')}"
        fail(text)


def table(
    rows: list[dict[str, Any]], columns: list[str], as_json: bool, title: str | None = None
) -> None:
    if as_json:
        out.print_json(json.dumps(rows))
        return
    if not rows:
        out.print(f"no {title or 'rows'}")
        return
    t = Table(title=title, show_edge=False, header_style="bold")
    for c in columns:
        t.add_column(c)
    for row in rows:
        t.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    out.print(t)


# -- running the platform --------------------------------------------------------------------


@app.command()
def up(
    port: Annotated[
        int | None, typer.Option(help="API and HTTP trigger port (default 8080)")
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="API address to bind (default 127.0.0.1)")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="state, code store and tokens")] = None,
    listen: Annotated[
        str | None, typer.Option(help="address UDP/TCP triggers bind (default 127.0.0.1)")
    ] = None,
    onboard: Annotated[
        list[Path] | None, typer.Option(help="package or source folder to onboard on start")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error")] = None,
) -> None:
    """Start the platform on this node: REST API, triggers and function management."""
    import uvloop

    from nfaas.config import Config
    from nfaas.errors import NfaasError
    from nfaas.server import configure_logging, serve

    config = Config.from_env(
        os.environ,
        port=port,
        host=host,
        data_dir=data_dir,
        trigger_host=listen,
        log_level=log_level,
    )
    configure_logging(config.log_level)
    try:
        uvloop.run(serve(config, onboard or []))
    except NfaasError as exc:
        fail(exc.detail)
    except OSError as exc:
        fail(f"cannot start: {exc}")


# -- packages, offline -----------------------------------------------------------------------


@package_app.command("build")
def package_build(
    source: Annotated[Path, typer.Argument(help="folder with Definitions/ and Files/")],
    output: Annotated[Path, typer.Option("-o", "--output", help="the .csar file to write")],
) -> None:
    """Build a package (SOL004 CSAR zip) from a source folder."""
    from nfaas.errors import NfaasError
    from nfaas.packages.builder import build_package
    from nfaas.packages.csar import read_package

    try:
        data = build_package(source)
    except NfaasError as exc:
        fail(exc.detail)
    output.write_bytes(data)
    pkg = read_package(data)
    out.print(
        f"built {output}: {pkg.kind} package {pkg.name} {pkg.version}, {len(pkg.files)} files, {len(data)} bytes"
    )


@package_app.command("verify")
def package_verify(path: Annotated[Path, typer.Argument(help="a .csar file")]) -> None:
    """Check a package offline: archive safety, manifest hashes, descriptors."""
    from nfaas.errors import NfaasError
    from nfaas.packages.builder import verify_package

    try:
        pkg = verify_package(path.read_bytes())
    except NfaasError as exc:
        fail(f"{path}: {exc.detail}")
    except OSError as exc:
        fail(str(exc))
    out.print(
        f"{path}: valid {pkg.kind} package {pkg.name} {pkg.version} (sha256 {pkg.sha256[:16]}…)"
    )
    for fn in pkg.functions:
        triggers = ", ".join(_trigger_text(t.model_dump()) for t in fn.triggers) or "no triggers"
        out.print(f"  {fn.name} {fn.version}  runtime {fn.runtime}  {triggers}")


def _trigger_text(t: dict[str, Any]) -> str:
    kind = t["type"]
    if kind in ("udp", "tcp"):
        return f"{kind}:{t['port']}"
    if kind == "http":
        return f"http:{t.get('path') or '/fn'}"
    return f"timer:{t['interval_s']:g}s"


# -- onboarding and what is there ------------------------------------------------------------


@app.command()
def onboard(
    path: Annotated[Path, typer.Argument(help="a .csar package, or a source folder to build")],
    function: Annotated[
        bool, typer.Option("--function", help="a function package: update one function")
    ] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Onboard an application package (use case #1) or a function package (use case #2)."""
    if path.is_dir():
        from nfaas.errors import NfaasError
        from nfaas.packages.builder import build_package

        try:
            data = build_package(path)
        except NfaasError as exc:
            fail(exc.detail)
    else:
        data = path.read_bytes()
    endpoint = "/api/v1/function_packages" if function else "/api/v1/onboard"
    c = client(url, token)
    pkg = call(
        lambda: c.json("POST", endpoint, content=data, headers={"Content-Type": "application/zip"})
    )
    if as_json:
        out.print_json(json.dumps(pkg))
        return
    out.print(
        f"onboarded {pkg['kind']} package {pkg['appName']} {pkg['version']} as {pkg['id']}: "
        f"{', '.join(pkg['functions'])} ({pkg['onboardingState']}, {pkg['operationalState']})"
    )


@packages_app.command("ls")
def packages_ls(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List packages."""
    rows = call(lambda: client(url, token).json("GET", "/api/v1/vnf_packages"))
    table(
        rows,
        [
            "id",
            "kind",
            "appName",
            "version",
            "onboardingState",
            "operationalState",
            "usageState",
            "tenant",
        ],
        as_json,
        "packages",
    )


def _set_state(package_id: str, state: str, url: str | None, token: str | None) -> None:
    pkg = call(
        lambda: client(url, token).json(
            "PATCH", f"/api/v1/vnf_packages/{package_id}", json={"operationalState": state}
        )
    )
    out.print(f"package {pkg['id']} is {pkg['operationalState']}")


@packages_app.command("enable")
def packages_enable(package_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Enable a package: its functions serve events again."""
    _set_state(package_id, "ENABLED", url, token)


@packages_app.command("disable")
def packages_disable(package_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Disable a package: its triggers stop, its instances drain."""
    _set_state(package_id, "DISABLED", url, token)


@packages_app.command("rm")
def packages_rm(package_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Delete a package (disable it first)."""
    call(lambda: client(url, token).request("DELETE", f"/api/v1/vnf_packages/{package_id}"))
    out.print(f"deleted package {package_id}")


@app.command("ls")
def ls(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List functions with their versions, runtime and triggers."""
    rows = call(lambda: client(url, token).json("GET", "/api/v1/functions"))
    for r in rows:
        r["function"] = f"{r['app']}/{r['name']}"
        r["triggers"] = " ".join(_trigger_text(t) for t in r["triggers"])
        r["versions"] = ",".join(r["versions"])
        r["state"] = "enabled" if r["enabled"] else "disabled"
    table(
        rows,
        ["function", "currentVersion", "versions", "runtime", "triggers", "state"],
        as_json,
        "functions",
    )


@app.command()
def instances(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List running function instances."""
    rows = call(lambda: client(url, token).json("GET", "/api/v1/instances"))
    for r in rows:
        r["function"] = f"{r['app']}/{r['function']}@{r['version']}"
    table(
        rows,
        [
            "id",
            "function",
            "backend",
            "state",
            "in_flight",
            "served",
            "from_pool",
            "init_ms",
            "idle_s",
            "memory_mb",
        ],
        as_json,
        "instances",
    )


@app.command()
def triggers(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List trigger bindings and their listeners."""
    rows = call(lambda: client(url, token).json("GET", "/api/v1/triggers"))
    for r in rows:
        r["function"] = f"{r['app']}/{r['function']}"
    table(
        rows, ["binding", "function", "state", "delivered", "failed", "error"], as_json, "triggers"
    )


@app.command()
def metrics(
    prometheus: Annotated[
        bool, typer.Option("--prometheus", help="the Prometheus text exposition")
    ] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show invocations, errors, durations and cold starts per function version."""
    c = client(url, token)
    if prometheus:
        out.print(call(lambda: c.request("GET", "/metrics")).text, end="", highlight=False)
        return
    data = call(lambda: c.json("GET", "/api/v1/metrics"))
    if as_json:
        out.print_json(json.dumps(data))
        return
    rows = [{"function": k, **v} for k, v in data["functions"].items()]
    table(
        rows,
        [
            "function",
            "invocations",
            "errors",
            "cold_starts",
            "init_ms_mean",
            "duration_ms_p50",
            "duration_ms_p99",
        ],
        False,
        "metrics",
    )
    if data.get("dropped"):
        out.print(
            "dropped by triggers: " + ", ".join(f"{k}={v:g}" for k, v in data["dropped"].items())
        )


@app.command()
def invoke(
    target: Annotated[str, typer.Argument(help="app/function")],
    data: Annotated[str | None, typer.Option("--data", "-d", help="event body")] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="read the event body from a file ('-' = stdin)"),
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Invoke a function with an event and print its result."""
    if "/" not in target:
        fail("give the function as app/function")
    app_name, fn = target.split("/", 1)
    body = data.encode() if data is not None else b""
    if file is not None:
        body = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    response = call(
        lambda: client(url, token).request(
            "POST", f"/api/v1/functions/{app_name}/{fn}/invoke", content=body
        )
    )
    sys.stdout.buffer.write(response.content)
    if response.content and not response.content.endswith(b"\n") and sys.stdout.isatty():
        sys.stdout.write("\n")


# -- operator resources ----------------------------------------------------------------------


@runtimes_app.callback()
def runtimes_ls(
    ctx: typer.Context, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """List runtimes (with no subcommand)."""
    if ctx.invoked_subcommand is None:
        rows = call(lambda: client(url, token).json("GET", "/api/v1/runtimes"))
        table(
            rows,
            ["name", "version", "backend", "builtin", "sandbox_memory_mb", "description"],
            as_json,
            "runtimes",
        )


@runtimes_app.command("add")
def runtimes_add(
    ref: Annotated[str, typer.Argument(help="name:version")],
    backend: Annotated[str, typer.Option(help="sandbox backend: process, wasm, ...")],
    description: str = "",
    sandbox_memory_mb: Annotated[
        int, typer.Option(help="memory reserved per prepared sandbox")
    ] = 16,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Register a runtime in the repository (operator)."""
    name, _, version = ref.partition(":")
    body = {
        "name": name,
        "version": version,
        "backend": backend,
        "description": description,
        "sandbox_memory_mb": sandbox_memory_mb,
    }
    call(lambda: client(url, token).json("POST", "/api/v1/runtimes", json=body))
    out.print(f"runtime {ref} added")


@runtimes_app.command("show")
def runtimes_show(
    ref: Annotated[str, typer.Argument(help="name:version")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one runtime."""
    name, _, version = ref.partition(":")
    row = call(lambda: client(url, token).json("GET", f"/api/v1/runtimes/{name}/{version}"))
    table([row], list(row), as_json, "runtime")


@runtimes_app.command("set")
def runtimes_set(
    ref: Annotated[str, typer.Argument(help="name:version")],
    description: Annotated[str | None, typer.Option(help="new description")] = None,
    sandbox_memory_mb: Annotated[
        int | None, typer.Option(help="memory reserved per prepared sandbox")
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Update a runtime's description or sandbox memory (operator)."""
    name, _, version = ref.partition(":")
    body = {"description": description, "sandbox_memory_mb": sandbox_memory_mb}
    call(lambda: client(url, token).json("PATCH", f"/api/v1/runtimes/{name}/{version}", json=body))
    out.print(f"runtime {ref} updated")


@runtimes_app.command("rm")
def runtimes_rm(
    ref: Annotated[str, typer.Argument(help="name:version")],
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Delete a runtime no function uses (operator)."""
    name, _, version = ref.partition(":")
    call(lambda: client(url, token).request("DELETE", f"/api/v1/runtimes/{name}/{version}"))
    out.print(f"runtime {ref} deleted")


@pools_app.callback()
def pools_ls(
    ctx: typer.Context, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """List runtime pools (with no subcommand)."""
    if ctx.invoked_subcommand is None:
        rows = call(lambda: client(url, token).json("GET", "/api/v1/pools"))
        table(
            rows,
            ["id", "runtime", "size", "ready", "preparing", "taken", "errors", "last_error"],
            as_json,
            "pools",
        )


@pools_app.command("set")
def pools_set(
    pool_id: str,
    size: int,
    runtime: Annotated[str | None, typer.Option(help="name:version, to create a new pool")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Create or resize a pool (operator)."""
    body: dict[str, Any] = {"size": size}
    if runtime:
        body["runtime"] = runtime
    snap = call(lambda: client(url, token).json("PUT", f"/api/v1/pools/{pool_id}", json=body))
    out.print(f"pool {snap['id']}: size {snap['size']}, {snap['ready']} ready")


@token_app.command("create")
def token_create(
    tenant: str,
    operator: Annotated[bool, typer.Option("--operator", help="an operator token")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Create a token for a tenant (application provider) and print it (operator)."""
    body = {"tenant": tenant, "role": "operator" if operator else "tenant"}
    created = call(lambda: client(url, token).json("POST", "/api/v1/tokens", json=body))
    print(created["token"])


@token_app.command("ls")
def token_ls(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List tokens by id (operator)."""
    rows = call(lambda: client(url, token).json("GET", "/api/v1/tokens"))
    table(rows, ["id", "tenant", "role", "name"], as_json, "tokens")


@token_app.command("revoke")
def token_revoke(token_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Revoke a token by its id (operator)."""
    call(lambda: client(url, token).request("DELETE", f"/api/v1/tokens/{token_id}"))
    out.print(f"revoked token {token_id}")


@app.command()
def node(
    memory_mb: Annotated[int | None, typer.Option(help="set the node's memory capacity")] = None,
    cpu: Annotated[float | None, typer.Option(help="set the node's CPU capacity")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show (or, as operator, set) the node's capacity and reservations."""
    c = client(url, token)
    if memory_mb is not None or cpu is not None:
        snap = call(
            lambda: c.json("PATCH", "/api/v1/node", json={"memory_mb": memory_mb, "cpu": cpu})
        )
    else:
        snap = call(lambda: c.json("GET", "/api/v1/node"))
    table([snap], list(snap), as_json, "node")


# the eBPF group imports the helpers above when its commands run
from nfaas.cli.ebpf import ebpf_app  # noqa: E402

app.add_typer(ebpf_app, name="ebpf")

from nfaas.cli.keepalive import keepalive_app  # noqa: E402

app.add_typer(keepalive_app, name="keepalive")

from nfaas.cli.canary import register as register_canary  # noqa: E402

register_canary(app)

from nfaas.cli.microvm import microvm_app  # noqa: E402

app.add_typer(microvm_app, name="microvm")

from nfaas.cli.experiment import experiment  # noqa: E402

app.command("experiment")(experiment)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
