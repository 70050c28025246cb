"""The trigger service: the "supporting serverless" PaaS service of EVE025 7.2.2.

It holds the working parameters (which source triggers which function),
listens on every bound UDP/TCP port and timer, and keeps the HTTP routes of
the router in step. ``reconcile`` makes the running listeners match the
bindings of the enabled functions; ``check`` refuses a new application's
bindings before it is stored when another application holds them or the
operating system will not give the port.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Iterable
from typing import Any

from nfaas.errors import BindingConflict
from nfaas.packages.descriptors import (
    FunctionDescriptor,
    HttpTrigger,
    TcpTrigger,
    TimerTrigger,
    UdpTrigger,
)
from nfaas.telemetry.metrics import Telemetry
from nfaas.triggers.base import SourceState, TriggerBinding, TriggerSource
from nfaas.triggers.router import HttpRoute, Router
from nfaas.triggers.tcp import TcpSource
from nfaas.triggers.timer import TimerSource
from nfaas.triggers.udp import UdpSource

log = logging.getLogger(__name__)


def bindings_of(app: str, descriptors: Iterable[FunctionDescriptor]) -> list[TriggerBinding]:
    return [
        TriggerBinding(app, fn.name, spec, index)
        for fn in descriptors
        for index, spec in enumerate(fn.triggers)
    ]


class TriggerService:
    def __init__(self, router: Router, telemetry: Telemetry, *, host: str) -> None:
        self._router = router
        self._telemetry = telemetry
        self._host = host
        self._sources: dict[tuple[Any, ...], TriggerSource] = {}
        self._bindings: list[TriggerBinding] = []

    def check(
        self, app: str, descriptors: list[FunctionDescriptor], current: list[TriggerBinding]
    ) -> None:
        """Raise BindingConflict if ``app``'s new bindings clash with another app or the OS."""
        held = {b.key: b for b in current if b.app != app}
        ours = {b.key for b in current if b.app == app}
        for binding in bindings_of(app, descriptors):
            other = held.get(binding.key)
            if other is not None:
                raise BindingConflict(
                    f"{app}/{binding.function}: {binding.describe()} is already bound to "
                    f"{other.app}/{other.function}"
                )
            spec = binding.spec
            if isinstance(spec, UdpTrigger | TcpTrigger) and binding.key not in ours:
                self._probe_port(spec.type, spec.port, f"{app}/{binding.function}")

    def _probe_port(self, kind: str, port: int, who: str) -> None:
        sock = socket.socket(
            socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
        )
        try:
            if kind == "tcp":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, port))
        except OSError as exc:
            reason = "in use by another program" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise BindingConflict(
                f"{who}: cannot bind {kind} port {port} on {self._host}: {reason}"
            ) from exc
        finally:
            sock.close()

    async def reconcile(self, bindings: list[TriggerBinding]) -> None:
        """Start the listeners of new bindings, stop those of removed or changed ones."""
        self._bindings = list(bindings)
        wanted = {self._source_key(b): b for b in bindings if not isinstance(b.spec, HttpTrigger)}
        for key, source in list(self._sources.items()):
            if key not in wanted or wanted[key] != source.binding:
                await source.aclose()
                del self._sources[key]
        for key, binding in wanted.items():
            if key in self._sources:
                continue
            source = self._make(binding)
            self._sources[key] = source
            try:
                await source.start()
                log.info("trigger %s -> %s/%s", binding.describe(), binding.app, binding.function)
            except OSError as exc:
                source.state = SourceState.FAILED
                source.error = str(exc)
                log.error(
                    "trigger %s for %s/%s failed: %s",
                    binding.describe(),
                    binding.app,
                    binding.function,
                    exc,
                )
        routes: dict[str, HttpRoute] = {}
        for b in bindings:
            if isinstance(b.spec, HttpTrigger) and b.spec.path:
                routes[b.spec.path] = HttpRoute(b.app, b.function, frozenset(b.spec.methods))
        self._router.http_routes = routes

    @staticmethod
    def _source_key(binding: TriggerBinding) -> tuple[Any, ...]:
        return binding.key

    def _make(self, binding: TriggerBinding) -> TriggerSource:
        dispatch = self._router.dispatch
        spec = binding.spec
        if isinstance(spec, UdpTrigger):
            return UdpSource(binding, dispatch, self._telemetry, self._host)
        if isinstance(spec, TcpTrigger):
            return TcpSource(
                binding, dispatch, self._telemetry, self._host, self._router.max_event_bytes
            )
        assert isinstance(spec, TimerTrigger)
        return TimerSource(binding, dispatch, self._telemetry)

    def snapshot(self) -> list[dict[str, Any]]:
        out = []
        for b in self._bindings:
            source = self._sources.get(self._source_key(b))
            if source is not None:
                out.append(source.snapshot())
            else:
                out.append(
                    {"app": b.app, "function": b.function, "type": b.spec.type, "binding": b.describe(),
                     "state": "routed", "error": None, "delivered": None, "failed": None}
                )  # fmt: skip
        return out

    def source(self, key: tuple[Any, ...]) -> TriggerSource | None:
        return self._sources.get(key)

    async def aclose(self) -> None:
        for source in list(self._sources.values()):
            await source.aclose()
        self._sources.clear()
