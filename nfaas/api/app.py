"""The REST API and the HTTP trigger, one ASGI application over a ``Platform``."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from nfaas import __version__
from nfaas.api.deps import principal_dependency
from nfaas.api.gateway import TriggerGateway
from nfaas.api.problems import (
    http_error_handler,
    nfaas_error_handler,
    unexpected_error_handler,
    validation_error_handler,
)
from nfaas.api.routes import (
    dashboard,
    ebpf,
    functions,
    keepalive,
    observe,
    operations,
    packages,
    subscriptions,
    versions,
)
from nfaas.errors import NfaasError
from nfaas.platform import Platform


def create_app(platform: Platform) -> FastAPI:
    app = FastAPI(
        title="nfaas",
        version=__version__,
        summary="Serverless network functions and IoT services on edge nodes",
        description=(
            "Package management follows ETSI SOL005 names (`/vnf_packages`); functions, "
            "runtimes (the FaaS Runtime Software Repository of EVE025 7.2.1), pools (7.2.3), "
            "triggers (7.2.2), instances and metrics (7.2.5) complete it. Errors are RFC 9457 "
            "`application/problem+json`. Functions are invoked at `/fn/{app}/{function}` and "
            "at the custom routes their descriptors bind."
        ),
    )
    app.add_exception_handler(NfaasError, nfaas_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
    principal = principal_dependency(platform.auth)
    for module in (packages, functions, operations, observe, ebpf, keepalive, versions,
                   subscriptions, dashboard):  # fmt: skip
        app.include_router(module.router(platform, principal))
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    return app


def create_asgi(platform: Platform) -> TriggerGateway:
    """What the server runs: HTTP triggers in front, the management API behind them."""
    return TriggerGateway(platform, create_app(platform))
