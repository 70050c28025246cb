"""The queueing models, the service-rate rule and the C-V2X budget, on known numbers."""

from __future__ import annotations

import math

import pytest

from nfaas.experiments.harness import ci95
from nfaas.experiments.queueing import kingman_wait, pk_wait, service_rate
from nfaas.experiments.scenarios import budget


def test_both_models_give_mm1_for_poisson_arrivals_and_exponential_service() -> None:
    lam, mu = 600.0, 1000.0
    mm1 = lam / (mu * (mu - lam))  # M/M/1 mean wait
    assert kingman_wait(lam, mu, 1.0, 1.0) == pytest.approx(mm1)
    assert pk_wait(lam, mu, 1 / mu**2) == pytest.approx(mm1)
    assert kingman_wait(lam, mu, 0.0, 0.0) == 0.0  # D/D/1 below saturation never waits
    assert math.isinf(kingman_wait(mu, mu, 1.0, 1.0))


def _ramp(rate: float, delivery: float, mean_ms: float, lag_ms: float = 1.0) -> dict[str, float]:
    return {"rate": rate, "delivery": delivery, "mean_ms": mean_ms, "cpu_share": rate / 20_000,
            "generator_max_lag_ms": lag_ms}  # fmt: skip


def test_the_service_rate_is_the_last_rate_before_losses() -> None:
    ramp = [_ramp(4000, 1.0, 0.2), _ramp(8000, 1.0, 0.3), _ramp(12000, 0.97, 9.0)]
    mu = service_rate(ramp)
    assert mu["saturated"] and mu["mu"] == 8000 and mu["mu_source"] == "saturation point"
    assert mu["mu_cpu"] == pytest.approx(20_000)


def test_without_saturation_the_broker_cpu_gives_the_service_rate() -> None:
    mu = service_rate([_ramp(4000, 1.0, 0.2), _ramp(8000, 1.0, 0.25, lag_ms=200)])
    assert not mu["saturated"] and mu["mu"] == pytest.approx(20_000)
    assert mu["generator_bound"]


def test_the_paper_budget_is_about_107_ms_and_under_4_m() -> None:
    paper = budget(71.0, 3.0)
    assert paper["t_up_max_ms"] == pytest.approx(107.34)
    assert paper["up_m"] < 4 and paper["round_trip_m"] < 4.5


def test_confidence_intervals_are_student_t() -> None:
    est = ci95([1.0, 2.0, 3.0])
    assert est.mean == 2.0 and est.half_width == pytest.approx(2.484, abs=1e-3)
    assert ci95([5.0]).text() == "5.00"
