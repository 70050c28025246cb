"""The platform's one typed configuration.

Built from defaults, then the environment (``NFAAS_*``), then explicit
overrides (CLI flags); nothing deeper in the code reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

LogLevel = Literal["debug", "info", "warning", "error"]


def default_data_dir(env: Mapping[str, str]) -> Path:
    if "NFAAS_DATA_DIR" in env:
        return Path(env["NFAAS_DATA_DIR"])
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME", "/root")) / ".local" / "share")
    return Path(base) / "nfaas"


@dataclass(frozen=True)
class Config:
    data_dir: Path = field(default_factory=lambda: default_data_dir(os.environ))
    #: REST API and HTTP triggers
    host: str = "127.0.0.1"
    port: int = 8080
    #: address UDP and TCP port triggers bind to
    trigger_host: str = "127.0.0.1"
    log_level: LogLevel = "info"
    #: largest event accepted from any trigger
    max_event_bytes: int = 1 << 20
    #: largest package accepted for onboarding
    max_package_bytes: int = 64 << 20
    #: node capacity; None = measured (80 % of MemTotal, all cores)
    node_memory_mb: int | None = None
    node_cpu: float | None = None
    #: CPU reservations may add up to cores x this factor; 1.0 refuses any overcommit
    cpu_overcommit: float = 1.0
    #: serve /metrics without a token (for a Prometheus on a trusted network)
    metrics_public: bool = False
    #: how often idle instances are looked for (use case #4)
    reap_interval_s: float = 0.5
    #: bounded shutdown: time given to running invocations before they are cancelled
    shutdown_grace_s: float = 5.0
    #: allow descriptors whose code is a URL downloaded at onboarding (7.2.4)
    allow_code_urls: bool = True
    #: ... and from loopback, private and link-local addresses (off: no server-side
    #: request forgery against the node's own services or management network)
    allow_private_code_urls: bool = False
    #: whether to pre-provision the built-in runtime pools on start
    pools_enabled: bool = True
    #: send subscription notifications to loopback, private and link-local addresses too
    #: (off: a tenant's callback cannot reach the node's own services; see allow_private_code_urls)
    allow_private_callback_urls: bool = False
    #: how often subscribers get a FunctionMetrics notification (0: never)
    metrics_notification_interval_s: float = 60.0
    #: how often the automatic rollback rules of version-mapping policies are checked
    rollback_check_interval_s: float = 1.0

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: Any) -> Config:
        """Defaults < ``NFAAS_<FIELD>`` variables < ``overrides`` (None values ignored)."""
        values: dict[str, Any] = {"data_dir": default_data_dir(env)}
        for f in fields(cls):
            raw = env.get(f"NFAAS_{f.name.upper()}")
            if raw is None or f.name == "data_dir":
                continue
            values[f.name] = _coerce(f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "data_dir" in values:
            values["data_dir"] = Path(values["data_dir"])
        return cls(**values)

    def with_(self, **changes: Any) -> Config:
        return replace(self, **changes)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"


def _coerce(type_name: object, raw: str) -> Any:
    text = str(type_name)
    if "bool" in text:
        return raw.lower() in ("1", "true", "yes", "on")
    if text.startswith("int"):
        return int(raw)
    if "float" in text:
        return float(raw)
    return raw
