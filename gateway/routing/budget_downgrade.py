"""Budget downgrade (issue 14): when what is left of a budget falls below its downgrade
threshold, a request the router may choose for (`auto`, a compliance shorthand, either with
a variant) goes to the cheapest compliant model that still fits the budget, and says so with
`X-LG-Route-Reason: budget-downgrade`. A named model is never swapped: it is served as named,
or refused by the budget (402) like any request.

One rule for every budget that has a threshold — a key's daily budget today, a trace's
budget too (`remaining` and `threshold` are all it needs to know of the budget).

The choice only reorders the router's decision: its targets were already chosen by the
compliance gate (gateway/routing/selector.py) and have open endpoints, so a downgrade can
never pick a model the tier forbids. "Fits" uses the catalog's list prices at ranking rates
(the reservation then decides with the ledger's prices, exactly).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from domain.catalog import Catalog, ModelSpec
from gateway.routing.decision import RouteDecision, RouteTarget
from gateway.routing.selector import MODE_EXPLICIT, VARIANTS

BUDGET_DOWNGRADE_REASON = "budget-downgrade"


def downgrade_applies(remaining: Decimal | None, threshold: Decimal | None) -> bool:
    """The rule: a threshold is set and what remains of the budget is below it."""
    return remaining is not None and threshold is not None and remaining < threshold


def may_downgrade(decision: RouteDecision) -> bool:
    """Only a request that left the choice of model to the router: never a named model."""
    return decision.mode != MODE_EXPLICIT


def list_cost(
    catalog: Catalog,
    spec: ModelSpec,
    *,
    input_tokens: int,
    output_tokens: int,
    currency: str,
    at: datetime,
) -> Decimal | None:
    """A request's list cost on `spec`, in `currency` at the catalog's ranking rates (None
    when the catalog has no rate for a currency: such a model is ranked last)."""
    price = spec.price_at(at)
    cost = price.cost(input_tokens, output_tokens).amount
    to_usd = catalog.usd_per_unit.get(price.currency)
    from_usd = catalog.usd_per_unit.get(currency)
    if to_usd is None or from_usd is None or from_usd == 0:
        return None
    return cost * to_usd / from_usd


def floor_model_field(requested_model: str) -> str:
    """`auto`, `auto:small:fast`, `eu-strict:smart` → the same request with the `floor`
    variant (cheapest blended list price first): the router's own cheapest ordering."""
    parts = [part for part in requested_model.split(":") if part not in VARIANTS]
    return ":".join([*parts, "floor"])


def budget_downgrade(
    decision: RouteDecision,
    *,
    remaining: Decimal | None,
    threshold: Decimal | None,
    cost_of: Callable[[ModelSpec], Decimal | None],
    decide: Callable[[str], RouteDecision] | None = None,
) -> RouteDecision:
    """The decision to dispatch: unchanged unless the rule applies and the router chose; then
    the cheapest models first (those whose cost fits `remaining` ahead of those that do not;
    each model's endpoints keep their order), reason `budget-downgrade`. `decide` re-asks
    the router with the `floor` variant, so the cheapest compliant models are among the
    targets even when the first decision's (bounded) targets left them out."""
    if not downgrade_applies(remaining, threshold) or not may_downgrade(decision):
        return decision
    assert remaining is not None
    if decide is not None:
        decision = replace(
            decide(floor_model_field(decision.requested_model)),
            requested_model=decision.requested_model,
            variant=decision.variant,
        )
    costs: dict[str, Decimal | None] = {}
    for target in decision.targets:
        if target.spec.name not in costs:
            costs[target.spec.name] = cost_of(target.spec)
    position = {name: index for index, name in enumerate(costs)}

    def rank(target: RouteTarget) -> tuple[int, int, Decimal, int]:
        cost = costs[target.spec.name]
        unknown = cost is None
        fits = cost is not None and cost <= remaining
        return (
            0 if fits else 1,
            1 if unknown else 0,
            cost if cost is not None else Decimal(0),
            position[target.spec.name],
        )

    ordered = sorted(decision.targets, key=rank)  # stable: endpoints of a model keep order
    return replace(
        decision,
        chosen=ordered[0],
        failover=tuple(ordered[1:]),
        reason=BUDGET_DOWNGRADE_REASON,
        confidence=1.0,
    )
