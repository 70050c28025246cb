from __future__ import annotations

from nfaas.keepalive.base import ArrivalHistory
from nfaas.keepalive.fixed import FixedConfig, FixedKeepAlive
from nfaas.keepalive.never import NeverKeep
from tests.keepalive.conftest import counts_at


def test_fixed_keeps_ten_minutes_after_every_invocation_by_default() -> None:
    w = FixedKeepAlive().windows(ArrivalHistory(counts_at([0, 3, 30])))
    assert list(w.minutes) == [0, 3, 30]
    assert set(w.prewarm) == {0.0} and set(w.keepalive) == {10.0}
    assert FixedKeepAlive().default().keepalive_min == 10.0


def test_fixed_with_its_parameter_and_never_keep() -> None:
    history = ArrivalHistory(counts_at([5]))
    assert FixedKeepAlive(FixedConfig(keep_alive_min=60)).decide(history).keepalive_min == 60
    never = NeverKeep().decide(history)
    assert (never.prewarm_min, never.keepalive_min) == (0.0, 0.0)
