"""``nfaas canary``, ``promote``, ``rollback``, ``policy``; ``nfaas subscriptions``.

Version-mapping policies (EVE025 7.2.5) and subscriptions (gap #5.2), as a thin
client of the API. ``canary app/fn 2.0.0=20`` gives the rest of the events to
the stable version; name every version to set all the weights. The shared
helpers (client, error printing, tables) live in ``nfaas.cli.main``, imported
when a command runs, since ``main`` registers these commands.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

UrlOpt = Annotated[str | None, typer.Option("--url", help="API address")]
TokenOpt = Annotated[str | None, typer.Option("--token", help="bearer token")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print raw JSON")]
FunctionArg = Annotated[str, typer.Argument(help="app/function")]

subscriptions_app = typer.Typer(
    help="Subscriptions to metrics and lifecycle notifications.", invoke_without_command=True
)


def _path(function: str, tail: str) -> str:
    from nfaas.cli.main import fail

    app, _, name = function.partition("/")
    if not app or not name or "/" in name:
        fail(f"give the function as app/function, not {function!r}")
    return f"/api/v1/functions/{app}/{name}/{tail}"


def _weights(pairs: list[str], stable: str) -> dict[str, int]:
    """``version=weight`` pairs; what they leave of 100 goes to the stable version."""
    from nfaas.cli.main import fail

    weights: dict[str, int] = {}
    for pair in pairs:
        version, _, weight = pair.partition("=")
        if not version or not weight.isdigit():
            fail(f"weights are version=percent, not {pair!r}")
        weights[version] = int(weight)
    rest = 100 - sum(weights.values())
    if stable not in weights and rest > 0:
        weights = {stable: rest, **weights}
    return weights


def _show(policy: dict[str, Any], as_json: bool) -> None:
    from nfaas.cli.main import out, table

    if as_json:
        out.print_json(data=policy)
        return
    rows = [
        {"version": v, "weight": f"{w}%", "role": "stable" if v == policy["stable"] else "canary"}
        for v, w in policy["weights"].items()
    ]
    table(rows, ["version", "weight", "role"], False, f"{policy['app']}/{policy['function']}")
    if policy.get("lastRollback"):
        last = policy["lastRollback"]
        out.print(
            f"last rollback ({last['by']}): to {last['to']}: {last['reason']}", highlight=False
        )


def canary(
    function: FunctionArg,
    weights: Annotated[list[str], typer.Argument(help="version=percent, e.g. 2.0.0=20")],
    sticky: Annotated[
        str | None, typer.Option(help="keep a key on one version: header:NAME, json:FIELD, meta:peer")
    ] = None,
    rollback_on: Annotated[
        str | None, typer.Option(help="roll back automatically on error_rate or duration")
    ] = None,
    window: Annotated[float, typer.Option(help="seconds the rollback rule looks back")] = 60.0,
    url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Split a function's events between versions by weight (a canary)."""
    from nfaas.cli.main import call, client, fail

    c = client(url, token)
    current = call(lambda: c.json("GET", _path(function, "policy")))
    body: dict[str, Any] = {"weights": _weights(weights, current["stable"])}
    if sticky is not None:
        source, _, name = sticky.partition(":")
        if not name:
            fail(f"--sticky is source:name, not {sticky!r}")
        body["sticky"] = {"source": source, "name": name}
    if rollback_on is not None:
        body["rollbackRule"] = {"metric": rollback_on, "window_s": window}
    _show(call(lambda: c.json("PUT", _path(function, "policy"), json=body)), as_json)


def promote(
    function: FunctionArg,
    version: Annotated[str | None, typer.Argument(help="default: the heaviest canary")] = None,
    url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Give one version every event; it becomes the stable version."""
    from nfaas.cli.main import call, client

    c = client(url, token)
    body = {"version": version} if version else None
    _show(call(lambda: c.json("POST", _path(function, "promote"), json=body)), as_json)


def rollback(
    function: FunctionArg,
    reason: Annotated[str, typer.Option(help="kept with the rollback")] = "",
    url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Every event back to the stable version (without a canary: to the previous version)."""
    from nfaas.cli.main import call, client

    c = client(url, token)
    body = {"reason": reason}
    _show(call(lambda: c.json("POST", _path(function, "rollback"), json=body)), as_json)


def policy(
    function: FunctionArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Show a function's version-mapping policy."""
    from nfaas.cli.main import call, client

    c = client(url, token)
    _show(call(lambda: c.json("GET", _path(function, "policy"))), as_json)


@subscriptions_app.callback()
def list_subscriptions(
    ctx: typer.Context, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """List subscriptions, their state and delivery counts."""
    if ctx.invoked_subcommand is not None:
        return
    from nfaas.cli.main import call, client, table

    c = client(url, token)
    rows = call(lambda: c.json("GET", "/api/v1/subscriptions"))
    columns = ["id", "callbackUri", "state", "delivered", "failed", "pending", "lastError"]
    table(rows, columns, as_json, "subscriptions")


@subscriptions_app.command("add")
def add_subscription(
    callback: Annotated[str, typer.Argument(help="callback URI (tested with a GET: 204)")],
    type_: Annotated[list[str] | None, typer.Option("--type", help="notification type")] = None,
    function: Annotated[list[str] | None, typer.Option("--function", help="app/fn or app/*")] = None,
    secret: Annotated[str | None, typer.Option(help="HMAC-SHA256 signing secret")] = None,
    url: UrlOpt = None, token: TokenOpt = None,
) -> None:  # fmt: skip
    """Subscribe a callback URI to notifications."""
    from nfaas.cli.main import call, client, out

    c = client(url, token)
    body: dict[str, Any] = {"callbackUri": callback, "filter": {}, "secret": secret}
    if type_:
        body["filter"]["notificationTypes"] = type_
    if function:
        body["filter"]["functions"] = function
    created = call(lambda: c.json("POST", "/api/v1/subscriptions", json=body))
    out.print(f"subscription {created['id']} {created['state']}", highlight=False)


@subscriptions_app.command("rm")
def remove_subscription(subscription_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Delete a subscription (and what it has queued)."""
    from nfaas.cli.main import call, client

    c = client(url, token)
    call(lambda: c.request("DELETE", f"/api/v1/subscriptions/{subscription_id}"))


def register(app: typer.Typer) -> None:
    """Add the commands to the ``nfaas`` command."""
    for command in (canary, promote, rollback, policy):
        app.command()(command)
    app.add_typer(subscriptions_app, name="subscriptions")
