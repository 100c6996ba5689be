"""The money rules of issue 9 (items 4, 5, 6, 8) and issue 11's settlement, decided by the
real handlers through the group-commit writer on both event stores (SQLite, PostgreSQL):
the reservation bounds the charge, implausible upstream usage is capped and flagged, BYOK
debits only the fee while its budget counts the cost, a live request's lease keeps the
sweeper off it, a swept request that completes is corrected to its real usage, journalled
usage is what the sweeper charges, and a reservation found twice is a duplicate."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import pytest

from domain import commands as c
from domain.account import Account
from domain.application import LedgerApplication
from domain.clock import FixedClock
from domain.errors import BudgetExceeded, DuplicateRequest
from domain.handlers import UnitOfWork, admit_request
from domain.ids import account_id, request_aggregate_id
from domain.request import Request
from domain.usage import input_tokens_bound
from domain.writer import GroupCommitWriter
from tests.support.builders import complete_request, funded_project, unit_price, writer_run
from tests.support.ledger import MODEL, admit_command, replay_account, store_application

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
NANO = Decimal("0.000000001")


@pytest.fixture
def app(backend: dict[str, str]) -> Iterator[LedgerApplication]:
    with store_application(backend) as application:
        yield application


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def writer(app: LedgerApplication, clock: FixedClock) -> Iterator[GroupCommitWriter]:
    running = GroupCommitWriter(app, clock=clock).start()
    running.execute(unit_price(NOW, MODEL))
    yield running
    running.stop()


def project(writer: GroupCommitWriter, balance: str = "10") -> UUID:
    return funded_project(writer_run(writer), balance, reference="r")


def complete(writer: GroupCommitWriter, request_id: str, usage: c.UsageReport) -> dict:
    return writer.execute(complete_request(request_id, usage)).value


def cost(input_tokens: int, output_tokens: int, fee: str = "0.05") -> Decimal:
    provider = (Decimal(input_tokens) + 2 * Decimal(output_tokens)) / Decimal(1_000_000)
    provider = provider.quantize(NANO)
    return provider + (provider * Decimal(fee)).quantize(NANO)


def events_of(app: LedgerApplication, aggregate_id: UUID) -> list:
    return list(app.events.get(aggregate_id))


# --- item 4: the reservation bounds the charge ------------------------------------------


def test_a_request_with_many_choices_reserves_their_whole_output_and_is_charged_within_it(
    writer, app
) -> None:
    project_id = project(writer)
    # n=128, max_tokens=1000: the gateway admits 128 x 1000 output tokens (validation).
    admitted = writer.execute(
        admit_command(project_id, NOW, input_tokens=50, output_tokens=128_000)
    )
    assert admitted.value["reserved_amount"] == cost(50, 128_000)
    done = complete(writer, admitted.value["request_id"], c.UsageReport(50, 120_000))
    assert done["charged_amount"] == cost(50, 120_000)
    [charge] = [
        e for e in events_of(app, account_id(project_id)) if isinstance(e, Account.ChargePosted)
    ]
    assert charge.shortfall_amount == 0 and charge.usage_source == "provider"


@pytest.mark.parametrize(
    ("usage", "problem"),
    [
        (c.UsageReport(10, 1_000_000_000), "output_tokens_beyond_max"),
        (c.UsageReport(-1_000_000, 50), "input_tokens_invalid"),
        (c.UsageReport(10, -1_000_000), "output_tokens_invalid"),
        (c.UsageReport(10, 2.5), "output_tokens_invalid"),  # type: ignore[arg-type]
        (c.UsageReport(10_000_000, 50), "input_tokens_beyond_bound"),
    ],
)
def test_usage_the_request_could_not_produce_is_capped_at_the_reservation_and_flagged(
    writer, app, usage, problem
) -> None:
    project_id = project(writer, balance="10")
    admitted = writer.execute(admit_command(project_id, NOW, input_tokens=10, output_tokens=100))
    request_id = admitted.value["request_id"]
    reserved = admitted.value["reserved_amount"]
    done = complete(writer, request_id, usage)
    assert done["charged_amount"] <= reserved and done["usage_source"] == "capped"
    replay = replay_account(app, project_id)
    assert replay.charges == {request_id: done["charged_amount"]}
    assert replay.available == Decimal(10) - done["charged_amount"]  # the balance is not taken
    request_events = events_of(app, request_aggregate_id(request_id))
    [flag] = [e for e in request_events if isinstance(e, Request.UsageFlagged)]
    assert problem in flag.problems
    assert flag.charged_input_tokens >= 0 and flag.charged_output_tokens >= 0
    assert flag.input_tokens_bound == input_tokens_bound(10) and flag.output_tokens_max == 100
    [completed] = [e for e in request_events if isinstance(e, Request.Completed)]
    assert completed.input_tokens >= 0 and completed.output_tokens >= 0  # never negative
    assert completed.output_tokens <= 100 and completed.usage_source == "capped"
    [charge] = [
        e for e in events_of(app, account_id(project_id)) if isinstance(e, Account.ChargePosted)
    ]
    assert charge.usage_source == "capped" and charge.shortfall_amount == 0


def test_capped_usage_with_a_daily_budget_never_writes_off_or_overshoots(writer, app) -> None:
    project_id = project(writer)
    key = writer.execute(c.CreateApiKey(project_id=project_id, daily_budget=Decimal("0.001")))
    key_id = UUID(key.value["key_id"])
    admitted = writer.execute(
        admit_command(
            project_id,
            NOW,
            key_id=key_id,
            daily_budget=Decimal("0.001"),
            input_tokens=10,
            output_tokens=100,
        )
    )
    done = complete(writer, admitted.value["request_id"], c.UsageReport(10, 10**9))
    assert done["charged_amount"] == admitted.value["reserved_amount"]
    account = app.repository.get(account_id(project_id))
    assert account.spent_on(key_id, NOW.date()) <= Decimal("0.001")


# --- item 5: BYOK debits only the fee -----------------------------------------------------


def test_byok_reserves_and_debits_only_the_fee_while_recording_the_cost(writer, app) -> None:
    project_id = project(writer, balance="0")  # nothing prepaid: the provider bills them
    admitted = writer.execute(
        admit_command(project_id, NOW, key_source="byok", input_tokens=1000, output_tokens=1000)
    )
    assert admitted.value["reserved_amount"] == 0 and admitted.value["fee_rate"] == 0
    assert admitted.value["estimated_cost"] == cost(1000, 1000, fee="0")
    done = complete(writer, admitted.value["request_id"], c.UsageReport(800, 400))
    assert done["charged_amount"] == 0 and done["provider_cost"] == cost(800, 400, fee="0")
    [charge] = [
        e for e in events_of(app, account_id(project_id)) if isinstance(e, Account.ChargePosted)
    ]
    assert isinstance(charge, Account.OwnKeyChargePosted)
    assert charge.amount == 0 and charge.key_source == "byok"
    assert charge.budget_amount == cost(800, 400, fee="0")
    replay = replay_account(app, project_id)
    assert replay.posted == 0 and replay.pending == 0 and replay.available == 0


def test_a_byok_key_budget_counts_the_cost_though_nothing_is_debited(writer, app) -> None:
    project_id = project(writer, balance="1")
    budget = Decimal("0.004")
    key = writer.execute(c.CreateApiKey(project_id=project_id, daily_budget=budget))
    key_id = UUID(key.value["key_id"])

    def admit_byok() -> dict:
        return writer.execute(
            admit_command(
                project_id,
                NOW,
                key_id=key_id,
                daily_budget=budget,
                key_source="byok",
                input_tokens=1000,
                output_tokens=1000,  # 0.003 of cost each
            )
        ).value

    first = admit_byok()
    with pytest.raises(BudgetExceeded):
        admit_byok()  # 0.003 reserved + 0.003 > 0.004, though 0 is held from the balance
    complete(writer, first["request_id"], c.UsageReport(500, 0))  # 0.0005 of real cost
    account = app.repository.get(account_id(project_id))
    assert account.spent_on(key_id, NOW.date()) == cost(500, 0, fee="0")
    admit_byok()  # the budget's headroom came back with the real cost
    assert replay_account(app, project_id).posted == 0


# --- item 8: a reservation found twice is a duplicate ------------------------------------


def test_a_reservation_another_process_made_between_two_reads_is_a_duplicate_not_a_400(
    writer, app, clock
) -> None:
    project_id = project(writer)
    command = admit_command(project_id, NOW, idempotency_key_sha256="k" * 64)
    writer.execute(command)  # "process A" admitted it
    hidden = request_aggregate_id(command.facts.request_id)

    def load(aggregate_id: UUID):
        # "Process B" read the request before A committed, and the account after.
        if aggregate_id == hidden:
            return None
        return app.repository.get(aggregate_id)

    with pytest.raises(DuplicateRequest) as refused:
        admit_request(command, UnitOfWork(load, clock))
    assert refused.value.code == "duplicate_request"
    assert refused.value.details["original_request_id"] == command.facts.request_id


# --- item 6 and issue 11: leases, corrections, journalled usage --------------------------


def test_a_renewed_lease_keeps_the_sweeper_off_a_live_request(writer, app, clock) -> None:
    project_id = project(writer)
    admitted = writer.execute(admit_command(project_id, NOW))
    request_id = admitted.value["request_id"]
    clock.set(NOW + timedelta(minutes=9))
    renewed = writer.execute(
        c.ExtendDeadline(request_id=request_id, deadline_at=NOW + timedelta(minutes=19))
    )
    assert renewed.value["extended"] is True
    clock.set(NOW + timedelta(minutes=11))  # past the first deadline, not the renewed one
    swept = writer.execute(
        c.AbandonRequest(request_id=request_id, overdue_before=clock.now())
    ).value
    assert swept["changed"] is False
    done = complete(writer, request_id, c.UsageReport(900, 300))
    assert done["charged_amount"] == cost(900, 300)


def test_a_request_swept_anyway_and_then_answered_is_corrected_to_its_real_usage(
    writer, app
) -> None:
    project_id = project(writer)
    admitted = writer.execute(admit_command(project_id, NOW, input_tokens=1000, output_tokens=2000))
    request_id = admitted.value["request_id"]
    swept = writer.execute(c.AbandonRequest(request_id=request_id)).value
    assert swept["charged_amount"] == cost(1000, 0)  # the estimated input only
    done = complete(writer, request_id, c.UsageReport(1000, 1500))
    assert done["charged_amount"] == cost(1000, 1500)
    account_events = events_of(app, account_id(project_id))
    [correction] = [e for e in account_events if isinstance(e, Account.ChargeCorrected)]
    assert correction.amount == cost(1000, 1500) - cost(1000, 0)
    assert correction.previous_amount == cost(1000, 0)
    replay = replay_account(app, project_id)
    posted = sum(e.amount for e in account_events if isinstance(e, Account.ChargeCorrected))
    assert replay.posted + posted == cost(1000, 1500)
    account = app.repository.get(account_id(project_id))
    assert account.posted == cost(1000, 1500) and account.pending_total == 0
    request = app.repository.get(request_aggregate_id(request_id))
    assert request.status == "abandoned" and request.charged_amount == cost(1000, 1500)


def test_the_sweeper_charges_journalled_real_usage_never_the_estimate(writer, app) -> None:
    project_id = project(writer)
    admitted = writer.execute(admit_command(project_id, NOW, input_tokens=1000, output_tokens=2000))
    request_id = admitted.value["request_id"]
    writer.execute(
        c.JournalUsage(
            request_id=request_id,
            usage=c.UsageReport(1200, 700),
            finish_reason="stop",
            completion_chars=10,
            completion_sha256=None,
            latency_ms=5,
            upstream_ms=4,
        )
    )
    swept = writer.execute(c.AbandonRequest(request_id=request_id)).value
    assert swept["status"] == "completed" and swept["charged_amount"] == cost(1200, 700)
    replay = replay_account(app, project_id)
    assert replay.charges == {request_id: cost(1200, 700)} and replay.pending == 0
    request = app.repository.get(request_aggregate_id(request_id))
    assert request.status == "completed"
