"""The budget-downgrade rule (gateway/routing/budget_downgrade.py) on the real router and the
shipped catalog: below the threshold the router's choice becomes the cheapest compliant model
that fits; a named model is never swapped."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from domain.tiers import effective_tier
from gateway.routing.budget_downgrade import (
    BUDGET_DOWNGRADE_REASON,
    budget_downgrade,
    downgrade_applies,
    floor_model_field,
    list_cost,
)
from gateway.routing.decision import RouteDecision
from gateway.routing.router import Router

NOW = datetime(2026, 12, 1, tzinfo=UTC)
TIER = effective_tier("unrestricted")


def _cost_of(router: Router, input_tokens: int = 1000, output_tokens: int = 1000):  # type: ignore[no-untyped-def]
    return lambda spec: list_cost(
        router.catalog,
        spec,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        currency="USD",
        at=NOW,
    )


def _decide_and_downgrade(
    router: Router, model: str, *, remaining: Decimal, threshold: Decimal
) -> tuple[RouteDecision, RouteDecision]:
    """The router's decision for `model` (unrestricted tier), and that decision once the
    budget-downgrade rule has seen it, re-deciding on the same router."""
    decision = router.decide(model, TIER)
    downgraded = budget_downgrade(
        decision,
        remaining=remaining,
        threshold=threshold,
        cost_of=_cost_of(router),
        decide=lambda field: router.decide(field, TIER),
    )
    return decision, downgraded


def test_the_rule_applies_only_below_a_set_threshold() -> None:
    assert downgrade_applies(Decimal("0.99"), Decimal("1"))
    assert not downgrade_applies(Decimal("1"), Decimal("1"))
    assert not downgrade_applies(Decimal("0"), None)
    assert not downgrade_applies(None, Decimal("1"))


def test_floor_model_field_keeps_size_and_tier_and_replaces_the_variant() -> None:
    assert floor_model_field("auto") == "auto:floor"
    assert floor_model_field("auto:small:fast") == "auto:small:floor"
    assert floor_model_field("eu-strict:best") == "eu-strict:floor"


@pytest.mark.parametrize("model", ["auto", "auto:best", "eu-cloud", "eu-strict:fast"])
def test_below_the_threshold_the_router_choice_becomes_the_cheapest_compliant_model(
    router: Router, model: str
) -> None:
    decision, downgraded = _decide_and_downgrade(
        router, model, remaining=Decimal("0.50"), threshold=Decimal("1.00")
    )
    floor = router.decide(floor_model_field(model), TIER)
    assert downgraded.chosen.spec.name == floor.chosen.spec.name
    assert downgraded.reason == BUDGET_DOWNGRADE_REASON
    assert downgraded.headers()["X-LG-Route-Reason"] == "budget-downgrade"
    assert downgraded.requested_model == decision.requested_model
    # Every target is one the compliance gate let through for the original request.
    compliant = {candidate.model for candidate in decision.candidates}
    assert {target.spec.name for target in downgraded.targets} <= compliant
    costs = [_cost_of(router)(t.spec) for t in downgraded.targets]
    first = costs[0]
    assert first is not None and all(c is None or first <= c for c in costs)


def test_a_model_that_does_not_fit_the_remaining_budget_goes_after_those_that_do(
    router: Router,
) -> None:
    decision = router.decide("auto:best", TIER)
    cost_of = _cost_of(router, 100_000, 100_000)
    costs = {t.spec.name: cost_of(t.spec) for t in decision.targets}
    cheapest = min(value for value in costs.values() if value is not None)
    # Only the cheapest of these targets fits: it must come first even without re-deciding.
    downgraded = budget_downgrade(
        decision, remaining=cheapest, threshold=cheapest * 10, cost_of=cost_of
    )
    assert cost_of(downgraded.chosen.spec) == cheapest
    fitting = [cost_of(t.spec) <= cheapest for t in downgraded.targets]  # type: ignore[operator]
    assert fitting == sorted(fitting, reverse=True)


@pytest.mark.parametrize("model", ["gpt-5", "claude-sonnet:fast", "claude-opus-4-7"])
def test_a_named_model_is_never_swapped_whatever_the_budget(router: Router, model: str) -> None:
    decision, unchanged = _decide_and_downgrade(
        router, model, remaining=Decimal("0"), threshold=Decimal("1000")
    )
    assert unchanged is decision


def test_above_the_threshold_nothing_changes(router: Router) -> None:
    decision = router.decide("auto", TIER)
    assert (
        budget_downgrade(
            decision, remaining=Decimal("5"), threshold=Decimal("1"), cost_of=_cost_of(router)
        )
        is decision
    )
