"""The trigger service: retrying failed listeners, clashing bindings, bounded draining."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from nfaas.errors import BindingConflict
from nfaas.sandboxes.base import Event
from nfaas.telemetry.metrics import Telemetry
from nfaas.triggers.service import TriggerService
from tests.triggers.conftest import (
    HOST,
    StubDispatch,
    StubRouter,
    descriptor,
    dropped,
    free_port,
    http,
    tcp,
    timer,
    udp,
    udp_ask,
)

pytestmark = pytest.mark.timeout(20)


def states(service: TriggerService) -> list[tuple[str, str, str | None]]:
    return [(t["app"], t["state"], t["error"]) for t in service.snapshot()]


@pytest.mark.parametrize("kind", [socket.SOCK_DGRAM, socket.SOCK_STREAM])
async def test_a_failed_listener_is_retried_once_the_port_is_free(
    service: TriggerService, kind: int
) -> None:
    port = free_port(kind)
    binding = udp("app-a", port) if kind == socket.SOCK_DGRAM else tcp("app-a", port)
    squatter = socket.socket(socket.AF_INET, kind)
    squatter.bind((HOST, port))
    if kind == socket.SOCK_STREAM:
        squatter.listen()
    await service.reconcile([binding])
    assert states(service) == [
        ("app-a", "failed", f"{binding.describe()} on {HOST} is in use by another program")
    ]
    squatter.close()
    await service.reconcile([binding])
    assert states(service) == [("app-a", "listening", None)]


async def test_a_port_moving_to_another_application_is_bound_at_once(
    service: TriggerService, dispatch: StubDispatch
) -> None:
    port = free_port()
    await service.reconcile([udp("app-a", port)])
    await service.reconcile([udp("app-b", port)])
    assert states(service) == [("app-b", "listening", None)]
    assert await udp_ask(port, b"to b") == b"to b"
    assert dispatch.calls[-1].app == "app-b"


async def test_a_clash_keeps_the_holder_and_reports_the_other(
    service: TriggerService, dispatch: StubDispatch
) -> None:
    port = free_port()
    await service.reconcile([udp("app-a", port)])
    # app-b took the port while app-a was disabled; app-a is enabled again, listed first.
    await service.reconcile([udp("app-a", port), udp("app-b", port)])
    assert states(service) == [
        ("app-a", "listening", None),
        ("app-b", "failed", f"udp port {port} is bound to app-a/fn"),
    ]
    assert await udp_ask(port, b"x") == b"x" and dispatch.calls[-1].app == "app-a"
    assert [c.binding.app for c in service.conflicts([udp("app-b", port)])] == []
    assert [c.message for c in service.conflicts([udp("app-b", port), udp("app-a", port)])] == [
        f"udp port {port} is bound to app-a/fn"
    ]


async def test_with_no_holder_the_first_binding_given_wins(service: TriggerService) -> None:
    port = free_port()
    await service.reconcile([udp("app-a", port), udp("app-b", port)])
    assert states(service) == [
        ("app-a", "listening", None),
        ("app-b", "failed", f"udp port {port} is bound to app-a/fn"),
    ]


async def test_a_clashing_http_route_stays_with_its_holder(
    service: TriggerService, router: StubRouter
) -> None:
    await service.reconcile([http("app-a", "/hook")])
    await service.reconcile([http("app-b", "/hook"), http("app-a", "/hook")])
    assert router.http_routes["/hook"].app == "app-a"
    assert states(service) == [
        ("app-b", "failed", "http /hook is bound to app-a/fn"),
        ("app-a", "routed", None),
    ]


async def test_check_refuses_an_application_enabled_again_onto_a_held_port(
    service: TriggerService,
) -> None:
    port = free_port()
    await service.reconcile([udp("app-b", port)])
    with pytest.raises(
        BindingConflict, match=f"app-a/fn: udp port {port} is already bound to app-b/fn"
    ):
        service.check("app-a", [descriptor("fn", "app-a", [{"type": "udp", "port": port}])])
    free = free_port()
    service.check("app-a", [descriptor("fn", "app-a", [{"type": "udp", "port": free}])])


async def test_check_refuses_a_package_that_clashes_with_itself(service: TriggerService) -> None:
    port = free_port()
    fns = [
        descriptor("one", "app-a", [{"type": "udp", "port": port}]),
        descriptor("two", "app-a", [{"type": "udp", "port": port}]),
    ]
    with pytest.raises(BindingConflict, match=r"app-a/two: .* is also bound to app-a/one"):
        service.check("app-a", fns, [])


async def test_default_http_routes_and_timers_never_clash(service: TriggerService) -> None:
    mine = [descriptor("fn", "app-b", [{"type": "http"}, {"type": "timer", "interval_s": 60}])]
    service.check("app-b", mine, [http("app-a", None), timer("app-a", 60)])


async def test_reconcile_gives_the_events_of_a_removed_binding_a_grace(
    service: TriggerService, dispatch: StubDispatch, telemetry: Telemetry
) -> None:
    async def slow(event: Event) -> bytes:
        await asyncio.sleep(0.2)
        return b"done"

    dispatch.handler = slow
    port = free_port()
    await service.reconcile([udp("app-a", port)])
    asking = asyncio.create_task(udp_ask(port, b"x"))
    await asyncio.sleep(0.05)
    await service.reconcile([], grace_s=2.0)  # app-a disabled
    assert await asking == b"done"
    assert dropped(telemetry, "udp", "shutdown") == 0


async def test_aclose_drains_every_source_at_once_within_the_grace(
    service: TriggerService, dispatch: StubDispatch, telemetry: Telemetry
) -> None:
    async def hangs(event: Event) -> bytes:
        await asyncio.sleep(3600)
        return b""

    dispatch.handler = hangs
    ports = [free_port(), free_port()]
    await service.reconcile([udp("app-a", ports[0]), udp("app-b", ports[1]), timer("app-c", 0.02)])
    for port in ports:
        await udp_ask(port, b"x", wait=0.05)
    await asyncio.sleep(0.05)
    began = time.monotonic()
    await service.aclose(grace_s=0.3)
    # One grace for all, not one after the other (that would take 0.9 s).
    assert time.monotonic() - began < 0.75
    assert dropped(telemetry, "udp", "shutdown") == 2
    assert dropped(telemetry, "timer", "shutdown") == 1
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
            again.bind((HOST, port))
    await service.aclose()
