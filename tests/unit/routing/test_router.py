from __future__ import annotations

from decimal import Decimal

import pytest

from domain.errors import NoRouteAvailable
from domain.money import Money
from domain.tiers import effective_tier
from gateway.providers.base import ProviderEndpoint
from gateway.routing.router import Router
from tests.unit.routing.conftest import make_router


def test_an_explicit_model_is_chosen_with_full_confidence(router: Router) -> None:
    decision = router.decide("gpt-5", effective_tier("unrestricted"))
    assert decision.chosen.spec.name == "gpt-5"
    assert decision.confidence == 1.0
    assert "explicit" in decision.reason


def test_failover_of_an_explicit_model_tries_its_other_keys_first(router: Router) -> None:
    decision = router.decide("gpt-5", effective_tier("unrestricted"))
    assert decision.failover[0].spec.name == "gpt-5"
    assert decision.failover[0].endpoint_key != decision.chosen.endpoint_key


def test_floor_picks_the_cheapest_compliant_model(router: Router) -> None:
    decision = router.decide("auto:floor", effective_tier("eu_strict"))
    assert decision.chosen.spec.name == "mistral-small"
    assert "cheapest" in decision.reason


def test_best_picks_the_highest_quality_compliant_model(router: Router) -> None:
    assert (
        router.decide("auto:best", effective_tier("unrestricted")).chosen.spec.name
        == "claude-opus-4-7"
    )
    assert (
        router.decide("auto:best", effective_tier("eu_cloud")).chosen.spec.name
        == "claude-sonnet-eu"
    )


def test_fast_picks_the_model_with_the_lowest_expected_latency(router: Router) -> None:
    assert (
        router.decide("eu-sweden:fast", effective_tier("unrestricted")).chosen.spec.name
        == "nova-lite-sweden"
    )


def test_fast_learns_from_observed_latency(router: Router) -> None:
    decision = router.decide("eu-sweden:fast", effective_tier("unrestricted"))
    for _ in range(30):
        router.observe(decision.chosen, success=True, latency_ms=4000.0)
    assert (
        router.decide("eu-sweden:fast", effective_tier("unrestricted")).chosen.spec.name
        == "mistral-devstral-sweden"
    )


def test_a_variant_on_a_model_name_chooses_between_the_compliant_ways_to_reach_it(
    router: Router,
) -> None:
    decision = router.decide("claude-sonnet:fast", effective_tier("unrestricted"))
    assert decision.chosen.spec.name == "claude-sonnet"  # 1800 ms direct vs 2100 ms via Bedrock
    assert decision.failover[0].spec.name == "claude-sonnet-eu"


def test_a_bedrock_eu_model_is_never_sent_to_a_us_bedrock_endpoint(router: Router) -> None:
    decision = router.decide("claude-sonnet-eu", effective_tier("eu_cloud"))
    for target in decision.targets:
        if target.spec.provider == "bedrock":
            assert target.endpoint.region in target.spec.regions


def test_thompson_decisions_show_every_candidate_with_its_sampled_score(router: Router) -> None:
    decision = router.decide("eu-strict", effective_tier("unrestricted"))
    names = [candidate.model for candidate in decision.candidates]
    assert set(names) == {
        "mistral-small",
        "mistral-medium",
        "mistral-large",
        "mistral-codestral",
        "magistral-small",
        "magistral-medium",
    }
    scores = [candidate.score for candidate in decision.candidates]
    assert scores == sorted(scores, reverse=True)
    assert decision.candidates[0].model == decision.chosen.spec.name
    assert 0.0 <= decision.confidence <= 1.0


def test_the_same_seed_gives_the_same_decisions() -> None:
    first = [
        make_router(seed=5).decide("auto", effective_tier("unrestricted")).as_event_fields()
        for _ in range(3)
    ]
    second = [
        make_router(seed=5).decide("auto", effective_tier("unrestricted")).as_event_fields()
        for _ in range(3)
    ]
    assert first == second


def test_confidence_grows_as_evidence_separates_the_candidates(router: Router) -> None:
    effective = effective_tier("eu_strict")
    before = router.decide("eu-strict:small", effective)
    small = router.catalog.require("mistral-small")
    magistral = router.catalog.require("magistral-small")
    endpoint = before.chosen.endpoint
    from gateway.routing.decision import RouteTarget

    for _ in range(200):
        router.observe(RouteTarget(small, endpoint), success=True, latency_ms=300.0)
        router.observe(
            RouteTarget(magistral, endpoint),
            success=False,
            latency_ms=300.0,
            counts_for_breaker=False,
        )
    after = router.decide("eu-strict:small", effective)
    assert after.chosen.spec.name == "mistral-small"
    assert after.confidence > 0.99


def test_models_whose_endpoints_are_all_open_are_skipped(router: Router) -> None:
    for _ in range(5):
        router.board.get("mistral:default").record_failure("boom")
    decision = router.decide("auto", effective_tier("eu_cloud"))
    assert all(target.spec.provider == "bedrock" for target in decision.targets)
    assert "unavailable" in decision.reason


def test_when_every_compliant_endpoint_is_open_the_request_is_refused_not_rerouted(
    router: Router,
) -> None:
    for _ in range(5):
        router.board.get("mistral:default").record_failure("boom")
    with pytest.raises(NoRouteAvailable) as caught:
        router.decide("auto", effective_tier("eu_strict"))
    assert caught.value.code == "no_route_available"


def test_a_model_without_any_configured_endpoint_cannot_be_routed() -> None:
    only_openai = make_router(endpoints=(ProviderEndpoint("openai", "https://o.test"),))
    with pytest.raises(NoRouteAvailable):
        only_openai.decide("mistral-large", effective_tier("eu_strict"))


def test_the_leaderboard_ranks_models_by_expected_score_and_reports_money_as_strings(
    router: Router,
) -> None:
    good = router.decide("mistral-small", effective_tier("unrestricted")).chosen
    bad = router.decide("mistral-large", effective_tier("unrestricted")).chosen
    for _ in range(20):
        router.observe(good, success=True, latency_ms=400.0, cost=Money(Decimal("0.0001"), "EUR"))
        router.observe(bad, success=False, latency_ms=900.0, counts_for_breaker=False)
    board = router.leaderboard()
    assert [row["model"] for row in board] == ["mistral-small", "mistral-large"]
    assert board[0]["cost_totals"] == {"EUR": "0.002000000"}
    assert board[1]["success_rate"] == 0.0


def test_a_named_model_never_fails_over_to_another_model_unless_the_request_allows_it(
    router: Router,
) -> None:
    from domain.tiers import effective_tier

    pinned = router.decide("gpt-5", effective_tier("unrestricted"))
    assert {target.spec.name for target in pinned.targets} == {"gpt-5"}
    open_to_fallback = router.decide("gpt-5", effective_tier("unrestricted"), fallback_models=True)
    assert len({target.spec.name for target in open_to_fallback.targets}) > 1
    assert open_to_fallback.targets[0].spec.name == "gpt-5"
