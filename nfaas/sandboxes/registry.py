"""Sandbox backends by name, imported only when chosen (uvicorn's lazy registry)."""

from __future__ import annotations

import importlib

from nfaas.errors import BackendUnavailable
from nfaas.sandboxes.base import SandboxBackend

BACKENDS: dict[str, str] = {
    "process": "nfaas.sandboxes.process:ProcessBackend",
    "wasm": "nfaas.sandboxes.wasm:WasmBackend",
    "container": "nfaas.sandboxes.container:ContainerBackend",
    "microvm": "nfaas.sandboxes.microvm.backend:MicrovmBackend",
    "ebpf": "nfaas.ebpf.backend:EbpfBackend",
}
# The mock backend (nfaas.sandboxes.mock) is not here on purpose: it isolates
# nothing, so no runtime may name it unless a test wires it in explicitly.


def backend_class(name: str) -> type[SandboxBackend]:
    """The backend class registered under ``name``; raises BackendUnavailable if unknown."""
    try:
        target = BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise BackendUnavailable(f"no sandbox backend named {name!r} (known: {known})") from None
    module_name, _, attr = target.partition(":")
    cls: type[SandboxBackend] = getattr(importlib.import_module(module_name), attr)
    return cls


def available_backends() -> dict[str, tuple[bool, str]]:
    """Every registered backend with whether this machine can run it, and why not."""
    report: dict[str, tuple[bool, str]] = {}
    for name in BACKENDS:
        try:
            report[name] = backend_class(name).availability()
        except ImportError as exc:
            report[name] = (False, f"cannot import: {exc}")
    return report
