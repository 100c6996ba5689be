"""The ledger side of cost control (domain/cost_control.py) by the real handlers: a key's
downgrade threshold needs a daily budget, and what is left of a budget is read from the
Account the reservations are decided on."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

import pytest

from domain import commands as c
from domain.clock import FixedClock
from domain.cost_control import BudgetRemaining, SetKeyDowngradeThreshold
from domain.credentials import IssueCredential
from domain.errors import InvalidCommand
from tests.support.ledger import Ledger

START = datetime(2026, 12, 1, 12, tzinfo=UTC)


def test_a_threshold_needs_a_daily_budget_is_positive_and_is_recorded_once() -> None:
    ledger = Ledger(FixedClock(START))
    project_id = ledger.project()
    plain = UUID(ledger.run(c.CreateApiKey(project_id=project_id))["key_id"])
    with pytest.raises(InvalidCommand):
        ledger.run(SetKeyDowngradeThreshold(plain, Decimal("1")))
    budgeted = UUID(
        ledger.run(c.CreateApiKey(project_id=project_id, daily_budget=Decimal("5")))["key_id"]
    )
    with pytest.raises(InvalidCommand):
        ledger.run(SetKeyDowngradeThreshold(budgeted, Decimal("0")))
    assert ledger.run(SetKeyDowngradeThreshold(budgeted, Decimal("1")))["changed"] is True
    assert ledger.run(SetKeyDowngradeThreshold(budgeted, Decimal("1")))["changed"] is False
    cleared = ledger.run(SetKeyDowngradeThreshold(budgeted, None))
    assert cleared["changed"] is True and cleared["downgrade_threshold"] is None
    assert ledger.app.repository.get(budgeted).downgrade_threshold is None


def test_what_is_left_of_a_key_budget_and_of_a_credential_limit_counts_reservations() -> None:
    ledger = Ledger(FixedClock(START))
    project_id = ledger.project()
    ledger.price()
    key_id = UUID(
        ledger.run(c.CreateApiKey(project_id=project_id, daily_budget=Decimal("1")))["key_id"]
    )
    ledger.run(SetKeyDowngradeThreshold(key_id, Decimal("0.5")))
    ledger.run(IssueCredential("j1", key_id, "k", budget=Decimal("0.25")))
    before = ledger.run(BudgetRemaining(key_id, limit="credential:j1"))
    assert before["key_remaining"] == Decimal("1") and before["limit_remaining"] == Decimal("0.25")
    assert before["downgrade_threshold"] == Decimal("0.5")
    admitted = ledger.admit(project_id, key_id=key_id, daily_budget=Decimal("1"))
    after = ledger.run(BudgetRemaining(key_id, limit="credential:j1"))
    assert after["key_remaining"] == Decimal("1") - admitted["estimated_cost"]
    assert after["limit_remaining"] == Decimal("0.25")  # that request held no credential
