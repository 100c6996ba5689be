from __future__ import annotations

import random
from decimal import Decimal

import pytest

from domain.catalog import Catalog
from domain.money import Money
from gateway.routing.stats import Outcome, RouterStatistics
from gateway.routing.thompson import ThompsonScorer


def outcomes(count: int, seed: int) -> list[Outcome]:
    rng = random.Random(seed)
    models = ("mistral-small", "mistral-large", "gpt-5")
    return [
        Outcome(
            model=rng.choice(models), provider="x", endpoint="x:default",
            success=rng.random() < 0.9, latency_ms=rng.uniform(100, 2000),
            cost=Money(Decimal("0.001"), "EUR"), output_valid=rng.random() < 0.95,
        )
        for _ in range(count)
    ]  # fmt: skip


def test_replaying_the_same_outcomes_rebuilds_the_same_statistics() -> None:
    log = outcomes(500, seed=3)
    first = RouterStatistics.from_outcomes(log)
    second = RouterStatistics()
    for outcome in log:
        second.observe(outcome.model, outcome.provider, outcome.endpoint, outcome.success,
                       outcome.latency_ms, outcome.cost, outcome.output_valid)  # fmt: skip
    assert first.leaderboard() == second.leaderboard()
    for model in first.models():
        assert first.evidence(model) == second.evidence(model)


def test_old_evidence_fades_with_later_observations() -> None:
    stats = RouterStatistics(half_life_observations=100)
    for _ in range(50):
        stats.observe("a", "x", "x:1", False, 100.0)
    before = stats.evidence("a")
    for _ in range(100):
        stats.observe("b", "x", "x:1", True, 100.0)
    after = stats.evidence("a")
    assert before is not None and after is not None
    assert after.failures == pytest.approx(before.failures / 2, rel=1e-9)


def test_the_leaderboard_counts_requests_latency_validity_and_cost() -> None:
    stats = RouterStatistics()
    for latency in (100.0, 200.0, 300.0, 400.0):
        stats.observe("m", "p", "p:1", True, latency, Money(Decimal("0.25"), "USD"), True)
    stats.observe("m", "p", "p:2", False, 5000.0, None, False)
    (row,) = stats.leaderboard()
    assert (row["requests"], row["successes"], row["failures"]) == (5, 4, 1)
    assert row["latency_p50_ms"] == 200.0 and row["latency_p95_ms"] == 400.0
    assert row["output_valid_rate"] == 0.8
    assert row["cost_totals"] == {"USD": "1.000000000"}
    assert row["endpoints"] == {"p:1": 4, "p:2": 1}


def test_a_negative_or_infinite_latency_is_refused() -> None:
    with pytest.raises(ValueError):
        RouterStatistics().observe("m", "p", "p:1", True, -1.0)
    with pytest.raises(ValueError):
        RouterStatistics().observe("m", "p", "p:1", True, float("inf"))


def test_a_reliable_model_outscores_a_failing_one_on_average(catalog: Catalog) -> None:
    stats = RouterStatistics()
    for _ in range(100):
        stats.observe("mistral-small", "mistral", "mistral:default", True, 500.0)
        stats.observe("mistral-medium", "mistral", "mistral:default", False, 500.0)
    scorer = ThompsonScorer(stats, catalog, rng=random.Random(1))
    small = catalog.require("mistral-small")
    medium = catalog.require("mistral-medium")
    wins = sum(scorer.sample(small).score > scorer.sample(medium).score for _ in range(200))
    assert wins == 200
    assert scorer.moments(small).mean > scorer.moments(medium).mean


def test_output_validity_only_matters_when_the_request_asks_for_it(catalog: Catalog) -> None:
    stats = RouterStatistics()
    for _ in range(100):
        stats.observe("mistral-small", "mistral", "mistral:default", True, 500.0, None, False)
    scorer = ThompsonScorer(stats, catalog, rng=random.Random(1))
    small = catalog.require("mistral-small")
    assert scorer.moments(small, wants_valid_output=True).mean < scorer.moments(small).mean - 0.4


def test_the_seeded_sampler_is_reproducible(catalog: Catalog) -> None:
    spec = catalog.require("gpt-5")
    first = ThompsonScorer(RouterStatistics(), catalog, rng=random.Random(9)).sample(spec)
    second = ThompsonScorer(RouterStatistics(), catalog, rng=random.Random(9)).sample(spec)
    assert first == second
