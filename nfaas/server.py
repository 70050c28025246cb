"""``nfaas up``: the platform and its API in one process, on one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Generator
from pathlib import Path

import uvicorn

from nfaas.api.app import create_asgi
from nfaas.api.auth import write_client_config
from nfaas.config import Config
from nfaas.platform import Platform

log = logging.getLogger("nfaas")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


class _Server(uvicorn.Server):
    """uvicorn's server, minus its signal handling: the platform owns SIGINT and SIGTERM.

    uvicorn re-raises the captured signal once ``serve()`` returns, which kills the
    process (SIGTERM) or cancels the main task (SIGINT) before the platform's own
    ordered shutdown has run.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve(config: Config, onboard: list[Path] | None = None) -> None:
    """Run until SIGINT/SIGTERM, then shut down in order within the configured bound.

    A second signal forces uvicorn to stop waiting for open HTTP connections.
    """
    platform = Platform(config)
    try:
        await platform.start()
        await _serve(platform, config, onboard)
    finally:
        log.info(
            "shutting down: stopping triggers, draining instances (up to %g s)",
            config.shutdown_grace_s,
        )
        # Shielded: a second Ctrl-C must not cut the ordered shutdown short.
        await asyncio.shield(platform.aclose())
        log.info("nfaas stopped")


async def _serve(platform: Platform, config: Config, onboard: list[Path] | None) -> None:
    app = create_asgi(platform)
    server = _Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=max(1, round(config.shutdown_grace_s)),
        )
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.handle_exit, sig, None)
    write_client_config(config.data_dir, config.url, platform.operator_token)
    for path in onboard or []:
        await _onboard(platform, path)
    log.info(
        "nfaas up: API %s, data in %s, operator token in %s",
        config.url,
        config.data_dir,
        config.data_dir / "operator.token",
    )
    try:
        await server.serve()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _onboard(platform: Platform, path: Path) -> None:
    """``nfaas up --onboard``: a package file, or a source folder built on the spot."""
    from nfaas.packages.builder import build_package
    from nfaas.packages.csar import read_package

    data = build_package(path) if path.is_dir() else path.read_bytes()
    contents = read_package(data)
    if any(
        p.version == contents.version for p in platform.store.find_onboarded_app(contents.app_name)
    ):
        log.info("%s: %s %s is already onboarded", path, contents.app_name, contents.version)
        return
    record = await platform.onboarding.onboard(data, "operator", expect="application")
    log.info(
        "onboarded %s: %s %s (%s)", path, record.app, record.version, ", ".join(record.functions)
    )
