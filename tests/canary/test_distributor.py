"""The distributor follows version-mapping weights exactly, and sticky keys stay put."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from scipy.stats import binomtest, chisquare

from nfaas.errors import InvalidVersionPolicy, NotFound
from nfaas.sandboxes.base import Event
from nfaas.triggers.distributor import Distributor, StickyKey, VersionPolicy

EVENTS = 10_000


def distributor(policy: VersionPolicy, seed: int = 6) -> Distributor:
    d = Distributor(random.Random(seed))
    d.set_policies({("demo", "fn"): policy})
    return d


@pytest.mark.parametrize(
    "weights", [{"1": 80, "2": 20}, {"1": 70, "2": 20, "3": 10}, {"1": 1, "2": 99}]
)
def test_weights_are_followed_over_ten_thousand_events(weights: dict[str, int]) -> None:
    d = distributor(VersionPolicy.of(weights, list(weights)))
    seen = Counter(d.pick("demo", "fn") for _ in range(EVENTS))
    observed = [seen[v] for v in weights]
    expected = [EVENTS * w / 100 for w in weights.values()]
    # chi-square goodness of fit: a wrong split (e.g. 75/25) gives p far below 1e-3
    assert chisquare(observed, expected).pvalue > 1e-3, (observed, expected)
    assert sum(observed) == EVENTS


def test_a_split_off_by_five_points_would_be_caught() -> None:
    """The test above has power: 75/25 against 80/20 over 10,000 events is refused."""
    d = distributor(VersionPolicy.of({"1": 75, "2": 25}, ["1", "2"]))
    seen = Counter(d.pick("demo", "fn") for _ in range(EVENTS))
    assert chisquare([seen["1"], seen["2"]], [8000, 2000]).pvalue < 1e-6


def test_a_zero_weight_version_gets_nothing_and_a_single_one_everything() -> None:
    d = distributor(VersionPolicy.of({"1": 100, "2": 0}, ["2", "1"]))
    assert {d.pick("demo", "fn") for _ in range(1000)} == {"1"}
    with pytest.raises(NotFound):
        d.pick("demo", "other")


def header_event(device: str) -> Event:
    return Event("http", b"", {"headers": {"X-Device": device}})


def test_sticky_keys_keep_their_version_and_spread_by_weight() -> None:
    sticky = StickyKey("header", "x-device")
    d = distributor(VersionPolicy.of({"1": 80, "2": 20}, ["1", "2"], sticky))
    first = {f"dev-{i}": d.pick("demo", "fn", header_event(f"dev-{i}")) for i in range(EVENTS)}
    for _ in range(3):  # the same key, again and again: the same version
        assert all(d.pick("demo", "fn", header_event(k)) == v for k, v in first.items())
    on_canary = sum(1 for v in first.values() if v == "2")
    assert binomtest(on_canary, EVENTS, 0.20).pvalue > 1e-3, on_canary
    # raising the canary's share moves keys towards it only: none leaves version 2
    d.set_policies({("demo", "fn"): VersionPolicy.of({"1": 70, "2": 30}, ["1", "2"], sticky)})
    after = {k: d.pick("demo", "fn", header_event(k)) for k in first}
    assert all(after[k] == "2" for k, v in first.items() if v == "2")
    assert binomtest(sum(v == "2" for v in after.values()), EVENTS, 0.30).pvalue > 1e-3


def test_sticky_by_json_field_and_by_peer_and_events_without_a_key() -> None:
    by_field = distributor(
        VersionPolicy.of({"1": 50, "2": 50}, ["1", "2"], StickyKey("json", "device"))
    )
    event = Event("http", b'{"device": "t-7", "value": 3}')
    assert len({by_field.pick("demo", "fn", event) for _ in range(200)}) == 1
    no_key = [Event("http", b"not json"), Event("http", b'{"other": 1}'), Event("http", b"[1]")]
    # without a key the pick is by weight: both versions show up
    for e in no_key:
        assert {by_field.pick("demo", "fn", e) for _ in range(200)} == {"1", "2"}
    by_peer = distributor(
        VersionPolicy.of({"1": 50, "2": 50}, ["1", "2"], StickyKey("meta", "peer"))
    )
    flows = [Event("udp", b"x", {"peer": f"10.0.0.{i}:5000"}) for i in range(100)]
    picks = [by_peer.pick("demo", "fn", e) for e in flows]
    assert picks == [by_peer.pick("demo", "fn", e) for e in flows]
    assert set(picks) == {"1", "2"}


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"1": 80, "2": 10}, "weights must sum to 100, not 90 (1=80, 2=10)"),
        ({"1": 80, "2": 30}, "weights must sum to 100, not 110"),
        ({"1": 80, "9": 20}, "no serving version 9; serving: 1, 2"),
        ({"1": 120, "2": -20}, "weights are whole percentages from 0 to 100"),
    ],
)
def test_bad_weights_are_refused_with_the_reason(weights: dict[str, int], message: str) -> None:
    with pytest.raises(InvalidVersionPolicy) as caught:
        VersionPolicy.of(weights, ["1", "2"])
    assert message in caught.value.detail
