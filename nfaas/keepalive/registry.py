"""Keep-alive policies by name, imported only when chosen (uvicorn's lazy registry)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from nfaas.errors import InvalidPolicy
from nfaas.keepalive.base import KeepAlivePolicy, parse_config

#: name -> "module:PolicyClass:ConfigClass"
POLICIES: dict[str, str] = {
    "fixed": "nfaas.keepalive.fixed:FixedKeepAlive:FixedConfig",
    "never": "nfaas.keepalive.never:NeverKeep:NeverConfig",
    "hybrid": "nfaas.keepalive.hybrid:HybridHistogram:HybridConfig",
    "forecast": "nfaas.keepalive.forecast:SeasonalForecast:ForecastConfig",
}


def policy_class(name: str) -> tuple[type[KeepAlivePolicy], type[Any]]:
    """The policy class registered under ``name`` and its config class."""
    try:
        target = POLICIES[name]
    except KeyError:
        known = ", ".join(sorted(POLICIES))
        raise InvalidPolicy(f"no keep-alive policy named {name!r} (known: {known})") from None
    module_name, cls_name, config_name = target.split(":")
    module = importlib.import_module(module_name)
    policy: type[KeepAlivePolicy] = getattr(module, cls_name)
    return policy, getattr(module, config_name)


def make_policy(name: str, params: Mapping[str, Any] | None = None) -> KeepAlivePolicy:
    """A policy from its name and parameters; ``InvalidPolicy`` names what is wrong."""
    cls, config_cls = policy_class(name)
    config = parse_config(config_cls, params or {}, name)
    return cls(config)  # type: ignore[call-arg]


def parse_spec(spec: str) -> tuple[str, dict[str, float]]:
    """``"hybrid:range_min=120,margin=0.2"`` -> ``("hybrid", {...})`` (CLI form)."""
    name, _, rest = spec.partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidPolicy(f"{spec!r}: parameters are name=value, not {item!r}")
        params[key.strip()] = value.strip()
    make_policy(name.strip(), params)  # validated now, with the precise error
    return name.strip(), {k: float(v) for k, v in params.items()}
