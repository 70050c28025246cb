from __future__ import annotations

import pytest

from nfaas.errors import InvalidPolicy, InvalidRequest
from nfaas.keepalive.registry import POLICIES, make_policy, parse_spec


def test_every_registered_policy_builds_with_its_defaults() -> None:
    for name in POLICIES:
        policy = make_policy(name)
        assert policy.name == name
        assert policy.default().ready >= 1


def test_parameters_are_typed_and_kept() -> None:
    policy = make_policy("hybrid", {"range_min": "120", "margin": 0.2})
    assert policy.parameters()["range_min"] == 120.0 and policy.parameters()["margin"] == 0.2


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("fixed", {"keep_alive_min": -1}, "keep_alive_min must be in [0, 10080], not -1"),
        ("hybrid", {"margin": 1.5}, "margin must be in [0, 0.99], not 1.5"),
        ("hybrid", {"range_min": 1}, "range_min must be in [2, 1440], not 1"),
        ("hybrid", {"oob_threshold": 0}, "oob_threshold must be in (0, 1], not 0"),
        ("hybrid", {"head_percentile": 50, "tail_percentile": 50}, "must be below tail_percentile"),
        ("forecast", {"tail_quantile": 1.0}, "tail_quantile must be in [0.5, 0.9999], not 1"),
        ("forecast", {"horizon_min": float("nan")}, "horizon_min must be in [2, 1440], not nan"),
        ("forecast", {"speed": 3}, "has no parameter 'speed'"),
        ("fixed", {"keep_alive_min": "ten"}, "keep_alive_min must be a number, not 'ten'"),
        ("lru", {}, "no keep-alive policy named 'lru' (known: fixed, forecast, hybrid, never)"),
    ],
)
def test_out_of_range_or_unknown_parameters_are_refused_precisely(
    name: str, params: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidPolicy) as info:
        make_policy(name, params)
    assert message in info.value.detail
    assert isinstance(info.value, InvalidRequest)  # a 400 through the API's one table


def test_cli_spec_is_parsed_and_checked() -> None:
    assert parse_spec("fixed:keep_alive_min=60") == ("fixed", {"keep_alive_min": 60.0})
    assert parse_spec("hybrid") == ("hybrid", {})
    with pytest.raises(InvalidPolicy, match="parameters are name=value"):
        parse_spec("hybrid:range_min")
    with pytest.raises(InvalidPolicy, match="margin must be in"):
        parse_spec("hybrid:margin=7")
