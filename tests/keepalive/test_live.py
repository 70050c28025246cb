from __future__ import annotations

from typing import Any

from nfaas.keepalive.live import KeepAliveController
from tests.lifecycle.conftest import make_version


def version(policy: dict[str, Any] | None, name: str = "fn") -> Any:
    return make_version(name=name, keepalive=policy) if policy else make_version(name=name)


def test_a_version_without_a_policy_has_no_window() -> None:
    controller = KeepAliveController(clock=lambda: 0.0)
    v = version(None)
    controller.observe(v, 10.0)
    assert controller.window(v) is None


def test_default_before_any_decision_then_the_policy_decides() -> None:
    controller = KeepAliveController(clock=lambda: 1000.0)
    v = version({"policy": "hybrid"})
    w = controller.window(v)
    assert w is not None and w.decision.mode == "default" and w.end - w.start == 240 * 60
    for minute in range(0, 60, 5):  # a 5-minute timer
        controller.observe(v, 1000.0 + minute * 60)
    assert controller.refresh_now() == 1
    w = controller.window(v)
    assert w is not None and w.decision.mode == "histogram" and w.prewarm
    last = 1000.0 + 55 * 60
    assert (w.anchor, w.start, w.end) == (last, last + 4 * 60, last + 6 * 60)
    assert controller.refresh_now() == 0  # nothing new: nothing recomputed


def test_application_scope_shares_one_history() -> None:
    controller = KeepAliveController()
    spec = {"policy": "fixed", "scope": "application", "parameters": {"keep_alive_min": 3}}
    a, b = version(spec, "a"), version(spec, "b")
    controller.observe(a, 100.0)
    controller.observe(b, 700.0)
    wa, wb = controller.window(a), controller.window(b)
    assert wa is not None and wb is not None
    assert wa.anchor == wb.anchor == 700.0 and wa.end == 700.0 + 180


def test_history_is_bounded_and_late_stamped_arrivals_count() -> None:
    from nfaas.keepalive.live import HISTORY_MINUTES

    controller = KeepAliveController()
    v = version({"policy": "never"})
    controller.observe(v, 60.0)  # minute 1
    controller.observe(v, 150.0)  # minute 2
    controller.observe(v, 70.0)  # stamped before the newest (events overlap): still counted
    unit = next(iter(controller._units.values()))
    assert list(unit.counts) == [2, 1] and unit.last_arrival == 150.0
    controller.observe(v, 10 * 86400.0)
    assert len(unit.counts) == HISTORY_MINUTES and sum(unit.counts) == 1


def test_a_busy_function_is_decided_once_a_minute() -> None:
    controller = KeepAliveController()
    v = version({"policy": "hybrid"})
    controller.observe(v, 1000.0)
    assert controller.refresh_now() == 1
    controller.observe(v, 1010.0)  # the same minute: the decision stands
    assert controller.refresh_now() == 0
    controller.observe(v, 1090.0)
    assert controller.refresh_now() == 1
