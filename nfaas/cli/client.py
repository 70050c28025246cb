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
    sources: list[tuple[str, dict[str, Any]]] = [
        ("flags", {"url": url, "token": token}),
        ("environment", {"url": env.get("NFAAS_URL"), "token": env.get("NFAAS_TOKEN")}),
    ]
    config_path = Path(
        env.get("NFAAS_CONFIG") or Path(env.get("HOME", "/root")) / ".config/nfaas/config.json"
    )
    sources.append((str(config_path), _read_json(config_path)))
    client_path = default_data_dir(env) / "client.json"
    sources.append((str(client_path), _read_json(client_path)))
    found_url = found_token = None
    origin = "default"
    for name, values in sources:
        if found_url is None and values.get("url"):
            found_url, origin = values["url"], name
        if found_token is None and values.get("token"):
            found_token = values["token"]
    return Target(found_url or "http://127.0.0.1:8080", found_token, origin)


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
