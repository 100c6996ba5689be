"""The request path's cost control (issue 14): the budget downgrade applied to a router
decision for the calling key, before admission.

Only a key with a downgrade threshold pays for it: one read of the writer's own Account
(domain/cost_control.BudgetRemaining: what the next reservation will see, no event), and,
when the rule applies, one more decision with the `floor` variant. The rule is
gateway/routing/budget_downgrade.py's, the same for every budget with a threshold.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from domain.catalog import Catalog, ModelSpec
from domain.cost_control import BudgetRemaining
from gateway.routing.budget_downgrade import (
    budget_downgrade,
    downgrade_applies,
    floor_model_field,
    list_cost,
    may_downgrade,
)
from gateway.routing.decision import RouteDecision


async def downgrade_for_budget(
    services: Any,
    key: Any,
    decision: RouteDecision,
    *,
    catalog: Callable[[], Awaitable[Catalog]],
    currency: str,
    estimated_input_tokens: int,
    max_output_tokens: int,
    redecide: Callable[[str], Awaitable[RouteDecision]],
) -> RouteDecision:
    """`decision` as the key's budget has it: unchanged unless the key has a downgrade
    threshold, the router chose the model, and what is left today is below the threshold.
    `redecide(model_field)` asks the router again with the request's own constraints;
    `catalog()` loads the project's catalog, only once a downgrade is in play (almost every
    request has no threshold and pays nothing here)."""
    threshold: Decimal | None = getattr(key, "downgrade_threshold", None)
    if threshold is None or not may_downgrade(decision):
        return decision
    outcome = await services.writer.execute_async(BudgetRemaining(key_id=key.id))
    remaining = outcome.value["key_remaining"]
    if not downgrade_applies(remaining, threshold):
        return decision
    floor = await redecide(floor_model_field(decision.requested_model))
    priced_by = await catalog()
    now = services.clock.now()

    def cost_of(spec: ModelSpec) -> Decimal | None:
        return list_cost(
            priced_by,
            spec,
            input_tokens=estimated_input_tokens,
            output_tokens=max_output_tokens,
            currency=currency,
            at=now,
        )

    return budget_downgrade(
        decision,
        remaining=remaining,
        threshold=threshold,
        cost_of=cost_of,
        decide=lambda _field: floor,
    )
