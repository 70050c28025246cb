"""``nfaas ebpf``: eBPF VNF instances (EVE025 6.6.1), a thin client of ``/api/v1/ebpf``.

Map keys and values are given as JSON objects or as ``field=value`` words:
``nfaas ebpf set ebpf-1a2b rules --key proto=udp --key dport=7001
--value action=drop --value counter=1``. The shared helpers (client, error
printing, tables) live in ``nfaas.cli.main``, imported when a command runs,
since ``main`` registers this group.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

ebpf_app = typer.Typer(no_args_is_help=True, help="eBPF VNFs attached to interfaces.")

UrlOpt = Annotated[str | None, typer.Option("--url", help="API address")]
TokenOpt = Annotated[str | None, typer.Option("--token", help="bearer token")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print raw JSON")]
FieldsOpt = Annotated[
    list[str], typer.Option(help="a JSON object, or field=value (repeat the option)")
]

_COLUMNS = ["id", "function", "hook", "state", "prog_id", "init_ms", "memory_bytes"]


def parse_fields(words: list[str]) -> dict[str, Any]:
    """``['{"a": 1}']`` or ``['a=1', 'b=udp']`` -> ``{"a": 1, "b": "udp"}``."""
    out: dict[str, Any] = {}
    for word in words:
        if word.lstrip().startswith("{"):
            try:
                loaded = json.loads(word)
            except ValueError as exc:
                raise typer.BadParameter(f"not a JSON object: {word!r} ({exc})") from None
            if not isinstance(loaded, dict):
                raise typer.BadParameter(f"not a JSON object: {word!r}")
            out.update(loaded)
            continue
        name, sep, value = word.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"expected field=value or a JSON object, not {word!r}")
        out[name] = (
            int(value, 0) if value.lstrip("-").isdigit() or value.startswith("0x") else value
        )
    return out


def _rows(instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [i | {"function": f"{i['app']}/{i['function']}@{i['version']}"} for i in instances]


@ebpf_app.command("ls")
def ls(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List eBPF instances."""
    from nfaas.cli.main import call, client, table

    rows = call(lambda: client(url, token).json("GET", "/api/v1/ebpf/instances"))
    table(_rows(rows), _COLUMNS, as_json, "eBPF instances")


@ebpf_app.command()
def instantiate(
    function: Annotated[str, typer.Argument(help="app/function")],
    interface: Annotated[str | None, typer.Option(help="interface to attach to")] = None,
    netns: Annotated[str | None, typer.Option(help="network namespace of the interface")] = None,
    direction: Annotated[str | None, typer.Option(help="ingress or egress (tc)")] = None,
    mode: Annotated[str | None, typer.Option(help="generic or native (XDP)")] = None,
    version: Annotated[str | None, typer.Option(help="default: the current version")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Load, verify and attach an eBPF function to an interface (operator)."""
    from nfaas.cli.main import call, client, table

    body = {"function": function, "interface": interface, "netns": netns,
            "direction": direction, "attach_mode": mode, "version": version}  # fmt: skip
    row = call(
        lambda: client(url, token).json(
            "POST", "/api/v1/ebpf/instances", json={k: v for k, v in body.items() if v}
        )
    )
    table(_rows([row]), _COLUMNS, as_json, "eBPF instance")


@ebpf_app.command()
def show(
    instance: str, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """One instance, with its counters."""
    from nfaas.cli.main import call, client, out

    data = call(lambda: client(url, token).json("GET", f"/api/v1/ebpf/instances/{instance}"))
    if as_json:
        out.print_json(json.dumps(data))
        return
    for key in ("id", "app", "function", "version", "hook", "state", "prog_id", "init_ms",
                "memory_bytes"):  # fmt: skip
        out.print(f"{key}: {data.get(key)}", highlight=False)
    for map_name, entries in data.get("counters", {}).items():
        for key, fields in entries.items():
            values = " ".join(f"{k}={v}" for k, v in fields.items())
            out.print(f"{map_name}[{key}]: {values}", highlight=False)


@ebpf_app.command("set")
def set_entry(
    instance: str,
    map_name: Annotated[str, typer.Argument(metavar="MAP")],
    key: FieldsOpt,
    value: FieldsOpt,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Add or change one entry of a configuration map (a rule)."""
    from nfaas.cli.main import call, client, out

    body = {"key": parse_fields(key), "value": parse_fields(value)}
    path = f"/api/v1/ebpf/instances/{instance}/maps/{map_name}/entries"
    stored = call(lambda: client(url, token).json("PUT", path, json=body))
    out.print_json(json.dumps(stored))


@ebpf_app.command("unset")
def unset_entry(
    instance: str,
    map_name: Annotated[str, typer.Argument(metavar="MAP")],
    key: FieldsOpt,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Remove one entry of a configuration map."""
    from nfaas.cli.main import call, client, out

    path = f"/api/v1/ebpf/instances/{instance}/maps/{map_name}/entries"
    call(lambda: client(url, token).request("DELETE", path, json={"key": parse_fields(key)}))
    out.print(f"removed from {map_name}")


@ebpf_app.command()
def entries(
    instance: str,
    map_name: Annotated[str, typer.Argument(metavar="MAP")],
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """The entries of a map, decoded by its declared layout."""
    from nfaas.cli.main import call, client, out

    path = f"/api/v1/ebpf/instances/{instance}/maps/{map_name}"
    out.print_json(json.dumps(call(lambda: client(url, token).json("GET", path))))


@ebpf_app.command()
def terminate(instance: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Detach and unload an instance."""
    from nfaas.cli.main import call, client, out

    call(lambda: client(url, token).request("DELETE", f"/api/v1/ebpf/instances/{instance}"))
    out.print(f"terminated {instance}")
