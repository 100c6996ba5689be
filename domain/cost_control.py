"""Cost control (issue 14), the ledger's part: a key's budget-downgrade threshold, and what is
left of a budget read from the Account the single writer decides on.

    SetKeyDowngradeThreshold → ApiKey.DowngradeThresholdSet
    BudgetRemaining          → no event: a read of the writer's own Account state (the same
                               in-memory aggregate that decides reservations), so the router
                               sees the budget as the next reservation will, not a stale copy

The rule itself (remaining below threshold → cheapest compliant model that fits) lives in
gateway/routing/budget_downgrade.py, for every budget that has a threshold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal
from typing import Any
from uuid import UUID

from domain.commands import Command
from domain.errors import InvalidCommand, UnknownKey
from domain.ids import account_id, key_mode
from domain.limits import limit_status
from domain.money import quantize_internal
from domain.project import ApiKey


@dataclass(frozen=True)
class SetKeyDowngradeThreshold(Command):
    key_id: UUID
    threshold: Decimal | None  # None: no downgrade


@dataclass(frozen=True)
class BudgetRemaining(Command):
    """What is left today of a key's daily budget (None when it has none); and, when
    `limit` names a limit on the Account (a trace's, a credential's), what is left of it."""

    key_id: UUID
    limit: str | None = None


def set_key_downgrade_threshold(cmd: SetKeyDowngradeThreshold, uow: Any) -> dict[str, Any]:
    key = uow.find(cmd.key_id)
    if not isinstance(key, ApiKey):
        raise UnknownKey(f"no API key {cmd.key_id}")
    threshold = None if cmd.threshold is None else quantize_internal(cmd.threshold)
    changed = key.set_downgrade_threshold(threshold, uow.clock.now())
    return {
        "key_id": str(key.id),
        "daily_budget": None if key.daily_budget is None else format(key.daily_budget, "f"),
        "downgrade_threshold": None if threshold is None else format(threshold, "f"),
        "changed": changed,
    }


def budget_remaining(cmd: BudgetRemaining, uow: Any) -> dict[str, Any]:
    key = uow.find(cmd.key_id)
    if not isinstance(key, ApiKey):
        raise UnknownKey(f"no API key {cmd.key_id}")
    account = uow.find(account_id(key.project_id, key_mode(key.key_prefix)))
    if account is None:
        raise InvalidCommand("this key's project has no balance")
    now = uow.clock.now()
    remaining: Decimal | None = None
    if key.daily_budget is not None:
        spent = account.spent_on(key.id, now.astimezone(UTC).date())
        remaining = max(key.daily_budget - spent, Decimal(0))
    limit_remaining: Decimal | None = None
    status = None if cmd.limit is None else limit_status(account, cmd.limit, now)
    if status is not None and status["cap"] is not None:
        limit_remaining = max(status["cap"] - status["pending"] - status["posted"], Decimal(0))
    return {
        "key_remaining": remaining,
        "downgrade_threshold": key.downgrade_threshold,
        "limit_remaining": limit_remaining,
        "currency": account.currency,
    }


COST_CONTROL_HANDLERS: dict[type, Callable[[Any, Any], Any]] = {
    SetKeyDowngradeThreshold: set_key_downgrade_threshold,
    BudgetRemaining: budget_remaining,
}
