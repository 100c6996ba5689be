"""Plans, monthly quotas, trial expiry, tiers, fees and idempotent admission, decided by the
real handlers on an in-memory store with a frozen, travelling clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import pytest
from freezegun import freeze_time

from domain import commands as c
from domain.account import Account
from domain.clock import FixedClock, SystemClock
from domain.errors import BudgetExceeded, DuplicateRequest, InvalidCommand, QuotaExceeded
from domain.handlers import plan_view
from domain.ids import account_id, idempotent_request_id
from domain.writer import GroupCommitWriter
from tests.support.ledger import Ledger, admit_command, freezable_memory_app

END_OF_NOVEMBER = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)


def admit_many(ledger: Ledger, project_id, count: int) -> None:
    writer = GroupCommitWriter(ledger.app, clock=ledger.clock).start()
    try:
        futures = [
            writer.submit(
                admit_command(project_id, ledger.clock.now(), input_tokens=10, output_tokens=10)
            )
            for _ in range(count)
        ]
        for future in futures:
            future.result(30)
    finally:
        writer.stop()


def test_a_free_project_gets_1000_requests_a_month_then_429_until_the_first_of_next_month() -> None:
    clock = FixedClock(END_OF_NOVEMBER)
    ledger = Ledger(clock)
    ledger.price()
    project = ledger.project(plan="free")
    admit_many(ledger, project, 1000)
    with pytest.raises(QuotaExceeded) as refused:
        ledger.admit(project, input_tokens=10, output_tokens=10)
    assert refused.value.details["resets_at"] == "2026-12-01T00:00:00Z"
    assert refused.value.details["retry_after_seconds"] == 3600
    assert refused.value.details["requests_this_month"] == 1000
    account = ledger.app.repository.get(account_id(project))
    pending_before = account.pending_total
    ledger.clock.set(datetime(2026, 12, 1, 0, 0, tzinfo=UTC))
    ledger.admit(project, input_tokens=10, output_tokens=10)
    account = ledger.app.repository.get(account_id(project))
    assert account.requests_in_month(clock.now()) == 1
    assert account.requests_in_month(END_OF_NOVEMBER) == 1000
    assert account.pending_total > pending_before  # the refused request reserved nothing


def test_a_refused_quota_request_records_no_account_event() -> None:
    ledger = Ledger(FixedClock(END_OF_NOVEMBER))
    ledger.price()
    project = ledger.project(plan="free")
    admit_many(ledger, project, 1000)
    version = ledger.app.repository.get(account_id(project)).version
    with pytest.raises(QuotaExceeded):
        ledger.admit(project)
    assert ledger.app.repository.get(account_id(project)).version == version


def test_pro_and_trial_allow_100000_requests_and_enterprise_is_unlimited() -> None:
    ledger = Ledger(FixedClock(END_OF_NOVEMBER))
    for plan, limit in (("pro", 100_000), ("trial", 100_000), ("enterprise", None)):
        project = ledger.project(plan=plan)
        view = ledger.run(c.SetTier(project_id=project, tier="eu_strict"))
        assert view["monthly_requests_max"] == limit
        assert view["tier"] == "eu_strict"


def test_a_trial_bills_as_trial_for_30_days_then_as_pro_with_no_job_running() -> None:
    clock = FixedClock(datetime(2026, 11, 1, 12, 0, tzinfo=UTC))
    ledger = Ledger(clock)
    ledger.price()
    project_id = ledger.project(plan="trial", tier="eu_cloud")
    project = ledger.app.repository.get(project_id)
    assert plan_view(project, None, clock.now())["billing_plan"] == "trial"
    clock.advance(days=29, hours=23, minutes=59)
    assert plan_view(project, None, clock.now())["billing_plan"] == "trial"
    assert ledger.admit(project_id)["billing_plan"] == "trial"
    clock.advance(minutes=1)
    view = plan_view(project, None, clock.now())
    assert view["billing_plan"] == "pro"
    assert view["trial_ends_at"] == "2026-12-01T12:00:00+00:00"
    assert ledger.admit(project_id)["billing_plan"] == "pro"
    # re-setting the trial plan does not restart it
    ledger.run(c.SetPlan(project_id=project_id, plan="trial"))
    project = ledger.app.repository.get(project_id)
    assert plan_view(project, None, clock.now())["billing_plan"] == "pro"


def test_the_free_plan_refuses_restricted_tiers_at_creation_on_tier_change_and_on_downgrade() -> (
    None
):
    ledger = Ledger(FixedClock(END_OF_NOVEMBER))
    with pytest.raises(InvalidCommand, match="free plan allows only the unrestricted tier"):
        ledger.project(plan="free", tier="eu_sweden")
    free = ledger.project(plan="free")
    with pytest.raises(InvalidCommand):
        ledger.run(c.SetTier(project_id=free, tier="eu_cloud"))
    pro = ledger.project(plan="pro", tier="eu_cloud")
    with pytest.raises(InvalidCommand):
        ledger.run(c.SetPlan(project_id=pro, plan="free"))
    assert ledger.app.repository.get(pro).plan == "pro"


def test_fees_are_5_percent_managed_0_byok_and_negotiated_only_on_enterprise() -> None:
    ledger = Ledger(FixedClock(END_OF_NOVEMBER))
    ledger.price()
    pro = ledger.project(plan="pro")
    assert ledger.admit(pro)["fee_rate"] == Decimal("0.05")
    byok = ledger.admit(pro, key_source="byok")
    assert byok["fee_rate"] == Decimal(0)
    assert byok["key_source"] == "byok"
    with pytest.raises(InvalidCommand, match="enterprise"):
        ledger.run(c.SetFeeRate(project_id=pro, fee_rate=Decimal("0.02")))
    with pytest.raises(InvalidCommand, match="enterprise"):
        ledger.project(plan="pro", fee_rate=Decimal("0.02"))
    enterprise = ledger.project(plan="enterprise")
    ledger.run(c.SetFeeRate(project_id=enterprise, fee_rate=Decimal("0.02")))
    assert ledger.admit(enterprise)["fee_rate"] == Decimal("0.02")
    assert ledger.admit(enterprise, key_source="byok")["fee_rate"] == Decimal(0)
    # leaving enterprise drops the negotiated fee back to the default
    ledger.run(c.SetPlan(project_id=enterprise, plan="pro"))
    assert ledger.admit(enterprise)["fee_rate"] == Decimal("0.05")


def test_a_daily_budget_refuses_at_the_cap_and_resets_at_midnight_utc_under_freezegun() -> None:
    with freeze_time("2026-11-21 23:59:30") as frozen:
        ledger = Ledger(SystemClock(), freezable_memory_app())
        ledger.price()
        project = ledger.project()
        key = ledger.run(c.CreateApiKey(project_id=project, daily_budget=Decimal("0.002")))
        key_id = UUID(key["key_id"])
        budget = Decimal("0.002")
        # each reservation: (1000*0.15 + 1000*0.60)/1e6 * 1.05 = 0.0007875
        ledger.admit(project, key_id=key_id, daily_budget=budget)
        ledger.admit(project, key_id=key_id, daily_budget=budget)
        with pytest.raises(BudgetExceeded) as refused:
            ledger.admit(project, key_id=key_id, daily_budget=budget)
        assert refused.value.details["resets_at"] == "2026-11-22T00:00:00Z"
        account: Account = ledger.app.repository.get(account_id(project))
        assert account.spent_on(key_id, datetime(2026, 11, 21).date()) == Decimal("0.0015750")
        frozen.move_to("2026-11-22 00:00:00")
        ledger.admit(project, key_id=key_id, daily_budget=budget)
        account = ledger.app.repository.get(account_id(project))
        assert account.spent_on(key_id, datetime(2026, 11, 22).date()) == Decimal("0.0007875")


def test_an_idempotent_retry_is_refused_as_a_duplicate_naming_the_original_and_its_status() -> None:
    ledger = Ledger(FixedClock(END_OF_NOVEMBER))
    ledger.price()
    project = ledger.project()
    request_id = idempotent_request_id(project, "order-42")
    first = ledger.admit(project, request_id=request_id, idempotency_key_sha256="h")
    version = ledger.app.repository.get(account_id(project)).version
    with pytest.raises(DuplicateRequest) as duplicate:
        ledger.admit(project, request_id=request_id, idempotency_key_sha256="h")
    assert duplicate.value.details == {
        "original_request_id": first["request_id"],
        "original_status": "dispatched",
    }
    assert ledger.app.repository.get(account_id(project)).version == version


def test_quota_counts_are_rebuilt_from_reserved_events_on_replay() -> None:
    ledger = Ledger(FixedClock(END_OF_NOVEMBER))
    ledger.price()
    project = ledger.project(plan="free")
    admit_many(ledger, project, 25)
    events = ledger.app.repository.event_store.get(account_id(project))
    replayed = None
    for event in events:
        replayed = event.mutate(replayed)
    assert replayed is not None
    assert replayed.requests_in_month(END_OF_NOVEMBER) == 25
    assert replayed.requests_in_month(END_OF_NOVEMBER + timedelta(days=1)) == 0
