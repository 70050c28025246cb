"""The router: from (application, function) and an event to a result.

Trigger sources name a function; the distributor names its version; the
catalog gives the deployable version; function management runs it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from nfaas.catalog.functions import FunctionCatalog
from nfaas.errors import EventTooLarge, NotFound
from nfaas.lifecycle.manager import FunctionManager
from nfaas.sandboxes.base import Event, Result
from nfaas.telemetry.metrics import Telemetry
from nfaas.triggers.chain import ChainRunner
from nfaas.triggers.distributor import Distributor


@dataclass(frozen=True, slots=True)
class HttpRoute:
    app: str
    function: str
    methods: frozenset[str]


class Router:
    def __init__(
        self,
        catalog: FunctionCatalog,
        distributor: Distributor,
        manager: FunctionManager,
        telemetry: Telemetry,
        *,
        max_event_bytes: int,
    ) -> None:
        self.catalog = catalog
        self.distributor = distributor
        self.manager = manager
        self.telemetry = telemetry
        self.max_event_bytes = max_event_bytes
        #: custom HTTP routes from descriptors, path -> function
        self.http_routes: dict[str, HttpRoute] = {}
        #: methods /fn/<app>/<function> accepts, for functions whose descriptor names
        #: them (an HTTP trigger without a path); any method for the others
        self.fn_methods: dict[tuple[str, str], frozenset[str]] = {}
        #: runs the next functions of a chain (a descriptor's ``chain``) after one succeeds
        self.chains = ChainRunner(self.dispatch, telemetry)

    async def dispatch(
        self, app: str, function: str, event: Event, *, arrival: float | None = None
    ) -> Result:
        arrival = time.monotonic() if arrival is None else arrival
        if len(event.body) > self.max_event_bytes:
            self.telemetry.dropped(event.trigger, "too_large")
            raise EventTooLarge(
                f"event of {len(event.body)} bytes is over the limit of {self.max_event_bytes} bytes"
            )
        try:
            version = self.distributor.pick(app, function, event)
        except NotFound:
            self.telemetry.dropped(event.trigger, "no_function")
            raise
        target = self.catalog.version(app, function, version)
        result = await self.manager.invoke(target, event, arrival=arrival)
        if target.descriptor.chain or event.trigger == "chain":
            self.chains.follow(target.descriptor, app, event, result, arrival)
        return result

    def tenant_of(self, app: str, function: str) -> str:
        version = self.distributor.pick(app, function)
        return self.catalog.version(app, function, version).tenant
