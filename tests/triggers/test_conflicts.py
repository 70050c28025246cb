"""Which binding keeps a port or route that several bindings claim."""

from __future__ import annotations

from nfaas.triggers.conflicts import clashes_within, resolve
from tests.triggers.conftest import http, timer, udp


def test_the_holder_keeps_its_port_wherever_it_is_listed() -> None:
    bindings = [udp("app-b", 9001), udp("app-a", 9001, "other"), udp("app-a", 9001)]
    plan = resolve(bindings, {("udp", 9001): ("app-a", "fn")})
    assert plan.holders[("udp", 9001)] is bindings[2]
    assert {p: c.message for p, c in plan.refused.items()} == {
        0: "udp port 9001 is bound to app-a/fn",
        1: "udp port 9001 is bound to app-a/fn",
    }


def test_a_renamed_function_of_the_holder_keeps_the_port() -> None:
    bindings = [udp("app-b", 9001), udp("app-a", 9001, "renamed")]
    plan = resolve(bindings, {("udp", 9001): ("app-a", "fn")})
    assert plan.holders[("udp", 9001)] is bindings[1]
    assert list(plan.refused) == [0]


def test_unheld_keys_go_to_the_first_claimant_and_shared_ones_are_not_claims() -> None:
    bindings = [
        udp("app-a", 9001),
        udp("app-b", 9001),
        http("app-a", None),
        http("app-b", None),
        timer("app-a", 1),
        timer("app-b", 1),
    ]
    plan = resolve(bindings)
    assert list(plan.refused) == [1]
    assert clashes_within(bindings) == [plan.refused[1]]
