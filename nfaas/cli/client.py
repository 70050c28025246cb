"""How CLI commands find the platform and a token, and talk to it.

In order: flags, the environment (``NFAAS_URL``, ``NFAAS_TOKEN``), the config
file (``$NFAAS_CONFIG`` or ``~/.config/nfaas/config.json``), and last the
``client.json`` that ``nfaas up`` writes into its data directory, so that on
the machine that runs the platform every command works with no setup.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from nfaas.config import default_data_dir

DEFAULT_URL = "http://127.0.0.1:8080"


@dataclass(frozen=True)
class Target:
    url: str
    token: str | None
    source: str


class ApiError(Exception):
    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        super().__init__(problem.get("detail") or problem.get("title") or f"HTTP {status}")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def resolve_target(url: str | None, token: str | None, env: Mapping[str, str]) -> Target:
    """The platform to talk to and the token to show it.

    The URL is the first one given by flags, environment, config file, local
    platform. A token given explicitly (flag, environment) is used as is; a
    token read from a file is used only with the URL that file names, so the
    local operator token is never sent to another platform.
    """
    config_path = Path(
        env.get("NFAAS_CONFIG") or Path(env.get("HOME", "/root")) / ".config/nfaas/config.json"
    )
    client_path = default_data_dir(env) / "client.json"
    files = [
        (str(config_path), _read_json(config_path)),
        (str(client_path), _read_json(client_path)),
    ]
    explicit = [
        ("flags", url, token),
        ("environment", env.get("NFAAS_URL"), env.get("NFAAS_TOKEN")),
    ]

    found_url, origin = None, "default"
    for name, candidate, _ in explicit:
        if candidate:
            found_url, origin = candidate, name
            break
    else:
        for name, values in files:
            if values.get("url"):
                found_url, origin = values["url"], name
                break
    resolved = found_url or DEFAULT_URL
    found_token = next((t for _, _, t in explicit if t), None)
    if found_token is None:
        for _, values in files:
            if values.get("token") and values.get("url", resolved) == resolved:
                found_token = values["token"]
                break
    return Target(resolved, found_token, origin)


class Client:
    def __init__(self, target: Target, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
        self.target = target
        self._http = httpx.Client(base_url=target.url, headers=headers, timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(
                0,
                {
                    "title": "Platform unreachable",
                    "detail": f"cannot reach nfaas at {self.target.url} ({exc}); is `nfaas up` running?",
                },
            ) from exc
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"title": f"HTTP {response.status_code}", "detail": response.text[:500]}
            raise ApiError(response.status_code, problem)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        return response.json() if response.content else None
