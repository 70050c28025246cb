"""The trigger service: the "supporting serverless" PaaS service of EVE025 7.2.2.

It holds the working parameters (which source triggers which function),
listens on every bound UDP/TCP port and timer, and keeps the HTTP routes of
the router in step.

``reconcile`` makes the running listeners match the bindings of the enabled
functions: it stops those removed or changed (with a short grace for the
events they hold), retries those that failed (a port another program held may
be free now), and starts the new ones. When two applications claim one port
or route, the one that holds it keeps it and the other is shown FAILED in
``snapshot`` (see ``conflicts.py``).

``check`` refuses an application's bindings before they take effect -- at
onboarding, and when a disabled application is enabled again -- when another
application holds them or the operating system will not give the port.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Iterable, Sequence
from typing import Any

from nfaas.errors import BindingConflict
from nfaas.packages.descriptors import (
    FunctionDescriptor,
    HttpTrigger,
    MqttTrigger,
    TcpTrigger,
    TimerTrigger,
    UdpTrigger,
)
from nfaas.telemetry.metrics import Telemetry
from nfaas.triggers.base import SourceState, TriggerBinding, TriggerSource
from nfaas.triggers.conflicts import Clash, Key, clashes_within, resolve
from nfaas.triggers.router import HttpRoute, Router
from nfaas.triggers.tcp import IDLE_TIMEOUT_S, MAX_CONNECTIONS, TcpSource
from nfaas.triggers.timer import TimerSource
from nfaas.triggers.udp import UdpSource

log = logging.getLogger(__name__)

#: seconds the listener of a disabled or changed binding gives its in-flight events
RECONCILE_GRACE_S = 1.0
#: seconds ``aclose`` allows past the grace for sockets to close, before it gives up waiting
CLOSE_MARGIN_S = 2.0


def bindings_of(app: str, descriptors: Iterable[FunctionDescriptor]) -> list[TriggerBinding]:
    return [
        TriggerBinding(app, fn.name, spec, index)
        for fn in descriptors
        for index, spec in enumerate(fn.triggers)
    ]


class TriggerService:
    def __init__(
        self,
        router: Router,
        telemetry: Telemetry,
        *,
        host: str,
        tcp_max_connections: int = MAX_CONNECTIONS,
        tcp_idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        self._router = router
        self._telemetry = telemetry
        self._host = host
        self._tcp_max_connections = tcp_max_connections
        self._tcp_idle_timeout_s = tcp_idle_timeout_s
        self._sources: dict[Key, TriggerSource] = {}
        self._bindings: list[TriggerBinding] = []
        #: bindings of ``_bindings`` refused by the last reconcile, by position
        self._refused: dict[int, Clash] = {}
        self._lock = asyncio.Lock()
        self._closed = False

    # -- checks before bindings take effect ----------------------------------------------

    def check(
        self,
        app: str,
        descriptors: Sequence[FunctionDescriptor],
        current: Iterable[TriggerBinding] | None = None,
    ) -> None:
        """Raise BindingConflict if ``app``'s bindings clash with one another, with another
        application's in ``current`` (by default: the bindings active now), or with the OS.
        """
        new = bindings_of(app, descriptors)
        for clash in clashes_within(new):
            raise BindingConflict(
                f"{clash.binding.owner}: {clash.binding.describe()} is also bound to "
                f"{clash.holder.owner} in the same package"
            )
        current = self.active() if current is None else list(current)
        held = {b.key: b for b in current if b.app != app and b.exclusive}
        ours = {b.key for b in current if b.app == app}
        for binding in new:
            if not binding.exclusive:
                continue
            other = held.get(binding.key)
            if other is not None:
                raise BindingConflict(
                    f"{binding.owner}: {binding.describe()} is already bound to {other.owner}"
                )
            spec = binding.spec
            if isinstance(spec, UdpTrigger | TcpTrigger) and binding.key not in ours:
                self._probe_port(spec.type, spec.port, binding.owner)

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

    def active(self) -> list[TriggerBinding]:
        """The bindings given to the last reconcile, less those it refused."""
        return [b for position, b in enumerate(self._bindings) if position not in self._refused]

    def conflicts(self, bindings: Sequence[TriggerBinding]) -> list[Clash]:
        """The bindings ``reconcile(bindings)`` would refuse, given who holds what now."""
        return list(resolve(bindings, self._held()).refused.values())

    def _held(self) -> dict[Key, tuple[str, str]]:
        held = {key: (s.binding.app, s.binding.function) for key, s in self._sources.items()}
        for path, route in self._router.http_routes.items():
            held[("http", path)] = (route.app, route.function)
        return held

    # -- keeping the listeners in step ---------------------------------------------------

    async def reconcile(
        self, bindings: Sequence[TriggerBinding], *, grace_s: float = RECONCILE_GRACE_S
    ) -> None:
        """Start the listeners of new bindings, retry failed ones, stop removed or changed ones
        (each giving its in-flight events up to ``grace_s``), and refuse clashing ones.
        """
        async with self._lock:
            if self._closed:
                return
            plan = resolve(bindings, self._held())
            known = {(c.binding.owner, c.message) for c in self._refused.values()}
            self._bindings, self._refused = list(bindings), plan.refused
            wanted = {
                key: b for key, b in plan.holders.items() if not isinstance(b.spec, HttpTrigger)
            }
            wanted.update(
                (b.key, b) for b in bindings if isinstance(b.spec, TimerTrigger | MqttTrigger)
            )
            stale = [
                key
                for key, source in self._sources.items()
                if key not in wanted
                or not wanted[key].same_as(source.binding)
                or source.state is SourceState.FAILED
            ]
            closing = [self._sources.pop(key) for key in stale]
            # Concurrently, and before starting anything: a port moving to another
            # function must be released first.
            await asyncio.gather(*(source.aclose(grace_s) for source in closing))
            for key, binding in wanted.items():
                if key not in self._sources:
                    await self._start(key, binding)
            self._router.http_routes = {
                b.spec.path: HttpRoute(b.app, b.function, frozenset(b.spec.methods))
                for b in plan.holders.values()
                if isinstance(b.spec, HttpTrigger) and b.spec.path
            }
            # An HTTP trigger without a path names the methods /fn/<app>/<function> takes.
            fn_methods: dict[tuple[str, str], frozenset[str]] = {}
            for b in bindings:
                if isinstance(b.spec, HttpTrigger) and not b.spec.path:
                    fn = (b.app, b.function)
                    fn_methods[fn] = fn_methods.get(fn, frozenset()) | frozenset(b.spec.methods)
            self._router.fn_methods = fn_methods
            for clash in plan.refused.values():
                if (clash.binding.owner, clash.message) in known:
                    continue
                log.error("trigger %s for %s refused: %s", clash.binding.describe(),
                          clash.binding.owner, clash.message)  # fmt: skip

    async def _start(self, key: Key, binding: TriggerBinding) -> None:
        source = self._make(binding)
        self._sources[key] = source
        try:
            await source.start()
            log.info("trigger %s -> %s", binding.describe(), binding.owner)
        except OSError as exc:
            source.state = SourceState.FAILED
            source.error = self._why(binding, exc)
            log.error("trigger %s for %s failed: %s", binding.describe(), binding.owner, exc)

    def _why(self, binding: TriggerBinding, exc: OSError) -> str:
        # uvloop wraps the bind error of a datagram endpoint; the errno is on its cause.
        cause = exc if exc.errno is not None else exc.__cause__ or exc.__context__
        if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
            return f"{binding.describe()} on {self._host} is in use by another program"
        return str(exc)

    def _make(self, binding: TriggerBinding) -> TriggerSource:
        dispatch = self._router.dispatch
        spec = binding.spec
        if isinstance(spec, UdpTrigger):
            return UdpSource(binding, dispatch, self._telemetry, self._host)
        if isinstance(spec, TcpTrigger):
            return TcpSource(
                binding,
                dispatch,
                self._telemetry,
                self._host,
                self._router.max_event_bytes,
                max_connections=self._tcp_max_connections,
                idle_timeout_s=self._tcp_idle_timeout_s,
            )
        if isinstance(spec, MqttTrigger):
            from nfaas.triggers.mqtt import MqttSource  # the MQTT client only if a function asks

            return MqttSource(binding, dispatch, self._telemetry)
        assert isinstance(spec, TimerTrigger)
        return TimerSource(binding, dispatch, self._telemetry)

    # -- observing -------------------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        out = []
        for position, b in enumerate(self._bindings):
            clash = self._refused.get(position)
            source = None if clash else self._sources.get(b.key)
            if source is not None:
                out.append(source.snapshot())
                continue
            state = "failed" if clash else "routed" if isinstance(b.spec, HttpTrigger) else "closed"
            out.append(
                {"app": b.app, "function": b.function, "type": b.spec.type, "binding": b.describe(),
                 "state": state, "error": clash.message if clash else None,
                 "delivered": None, "failed": None}
            )  # fmt: skip
        return out

    def source(self, key: Key) -> TriggerSource | None:
        return self._sources.get(key)

    # -- shutdown --------------------------------------------------------------------------

    async def aclose(self, grace_s: float = 0.0) -> None:
        """Stop every listener at once, give in-flight events up to ``grace_s`` to finish,
        all sources concurrently, and release the sockets; idempotent.

        Returns within about ``grace_s`` (plus ``CLOSE_MARGIN_S`` at worst, should a
        socket be slow to close); the events cancelled are counted as dropped "shutdown".
        """
        self._closed = True
        async with self._lock:
            sources = list(self._sources.values())
            self._sources.clear()
            if not sources:
                return
            closing = [asyncio.ensure_future(s.aclose(grace_s)) for s in sources]
            _, pending = await asyncio.wait(closing, timeout=max(0.0, grace_s) + CLOSE_MARGIN_S)
            if pending:
                log.error("%d trigger listeners did not close in time", len(pending))
