"""The ledger's contract, written once and run against both event stores (SQLite file,
real PostgreSQL): idempotent top-ups, two-phase reservations, one charge per request,
effective-dated prices, FX, daily budgets, and group commit that batches."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import pytest

from domain import commands as c
from domain.application import LedgerApplication
from domain.errors import (
    BudgetExceeded,
    IllegalTransition,
    InsufficientFunds,
    PriceNotFound,
    ReservationNotFound,
)
from domain.ids import account_id
from domain.writer import GroupCommitWriter
from tests.support.builders import (
    admit_request,
    complete_request,
    request_facts,
    unit_price,
    upstream_failure,
)
from tests.support.ledger import replay_account, store_application

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.fixture
def app(backend: dict[str, str]) -> Iterator[LedgerApplication]:
    with store_application(backend) as application:
        yield application


@pytest.fixture
def writer(app: LedgerApplication) -> Iterator[GroupCommitWriter]:
    running = GroupCommitWriter(app).start()
    yield running
    running.stop()


def project(
    writer: GroupCommitWriter, balance: str = "1.00", currency: str = "USD", **kwargs
) -> UUID:
    project_id = UUID(
        writer.execute(c.CreateProject(name="p", currency=currency, **kwargs)).value["project_id"]
    )
    writer.execute(
        c.TopUp(
            project_id=project_id, amount=Decimal(balance), currency=currency, reference="first"
        )
    )
    return project_id


def facts(project_id: UUID, key_id: UUID | None = None, at: datetime = NOW) -> c.RequestFacts:
    return request_facts(project_id, key_id=key_id, at=at, prompt_chars=5)


def admit(
    writer: GroupCommitWriter,
    project_id: UUID,
    input_tokens: int = 1000,
    output_tokens: int = 1000,
    **kwargs,
) -> str:
    request = facts(project_id, **{k: v for k, v in kwargs.items() if k in ("key_id", "at")})
    writer.execute(
        admit_request(
            request,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            daily_budget=kwargs.get("daily_budget"),
        )
    )
    return request.request_id


def complete(
    writer: GroupCommitWriter, request_id: str, input_tokens: int, output_tokens: int
) -> Decimal:
    return writer.execute(complete_request(request_id, (input_tokens, output_tokens))).value[
        "charged_amount"
    ]


@pytest.fixture
def priced(writer: GroupCommitWriter) -> None:
    writer.execute(unit_price(NOW, days=30))


def test_a_top_up_with_a_reference_already_seen_is_a_no_op(
    writer: GroupCommitWriter, app: LedgerApplication
) -> None:
    project_id = project(writer, "1.00")
    again = writer.execute(
        c.TopUp(project_id=project_id, amount=Decimal("1.00"), currency="USD", reference="first")
    ).value
    assert again["applied"] is False and again["available"] == "1.000000000"
    assert replay_account(app, project_id).credits == Decimal("1.00")


def test_a_top_up_in_another_currency_is_refused(writer: GroupCommitWriter) -> None:
    project_id = project(writer, "1.00", currency="EUR")
    with pytest.raises(Exception) as caught:
        writer.execute(
            c.TopUp(project_id=project_id, amount=Decimal("1"), currency="USD", reference="x")
        )
    assert getattr(caught.value, "code", "") == "currency_mismatch"


def test_a_reservation_beyond_the_available_balance_is_refused_and_records_nothing(
    writer, app, priced
) -> None:
    project_id = project(writer, "0.002")
    before = app.recorder.max_notification_id()
    with pytest.raises(InsufficientFunds):
        admit(writer, project_id, 1000, 1000)  # 0.001 + 0.002 + 5% > 0.002
    assert app.recorder.max_notification_id() == before


def test_a_charge_is_posted_once_and_the_rest_released(writer, app, priced) -> None:
    project_id = project(writer, "1.00")
    request_id = admit(writer, project_id, 1000, 1000)
    charged = complete(writer, request_id, 500, 250)
    assert charged == Decimal("0.001050000")  # (500*1 + 250*2)/1e6 = 0.001, +5%
    with pytest.raises(IllegalTransition):
        complete(writer, request_id, 500, 250)
    replay = replay_account(app, project_id)
    assert replay.charges == {request_id: charged} and replay.charge_events == 1
    assert replay.pending == 0 and replay.available == Decimal("1.00") - charged


def test_a_failed_request_without_usage_releases_everything(writer, app, priced) -> None:
    project_id = project(writer, "1.00")
    request_id = admit(writer, project_id)
    writer.execute(upstream_failure(request_id))
    replay = replay_account(app, project_id)
    assert replay.pending == 0 and replay.posted == 0 and replay.releases == 1
    with pytest.raises(IllegalTransition):
        complete(writer, request_id, 1, 1)


def test_a_charge_larger_than_the_reservation_never_takes_the_balance_below_zero(
    writer, app, priced
) -> None:
    project_id = project(writer, "0.004")
    request_id = admit(writer, project_id, 1000, 1000)  # reserves 0.00315
    # A prompt that tokenised 3x longer upstream, within what the request could use
    # (domain/usage.py; usage beyond that is an upstream error, capped at the reservation).
    charged = complete(writer, request_id, 3_000, 1_000)  # actual 0.00525: beyond what is there
    replay = replay_account(app, project_id)
    assert charged == Decimal("0.004") and replay.available == 0 and replay.lowest_available >= 0
    request = app.repository.get(app.repository.get(account_id(project_id)).id)
    assert request.available == 0


def test_prices_are_effective_dated_and_the_admission_price_is_recorded(writer, app) -> None:
    # Three prices for m, per million tokens each way: from two days ago, from yesterday
    # (the one in effect at NOW) and from tomorrow.
    earlier, later, future = (
        writer.execute(
            c.SetPrice(
                model="m",
                input_per_mtok=Decimal(per_mtok),
                output_per_mtok=Decimal(per_mtok),
                currency="USD",
                effective_from=NOW + timedelta(days=days),
            )
        ).value
        for per_mtok, days in ((1, -2), (3, -1), (9, 1))
    )
    project_id = project(writer, "1.00")
    request_id = admit(writer, project_id, 100, 100)
    charged = complete(writer, request_id, 1_000, 0)
    assert charged == Decimal("0.003150000")  # the price in effect at NOW, not the future one
    from domain.ids import request_aggregate_id

    assert app.repository.get(request_aggregate_id(request_id)).terms.price_id == later["price_id"]


def test_a_model_without_a_price_in_effect_is_refused(writer) -> None:
    project_id = project(writer, "1.00")
    with pytest.raises(PriceNotFound):
        admit(writer, project_id)


def test_an_eur_account_pays_usd_prices_at_the_recorded_rate_and_an_inverse_pair_works(
    writer, app, priced
) -> None:
    rate = writer.execute(
        c.SetFxRate(
            base="USD", quote="EUR", rate=Decimal("0.9"), effective_from=NOW - timedelta(days=1)
        )
    ).value
    writer.execute(
        c.SetFxRate(
            base="SEK", quote="USD", rate=Decimal("0.1"), effective_from=NOW - timedelta(days=1)
        )
    )
    eur = project(writer, "1.00", currency="EUR")
    # The estimate covers the usage: a million input tokens on a 1,000-token estimate would
    # be an upstream error (domain/usage.py), capped at the reservation.
    charged = complete(writer, admit(writer, eur, 1_000_000, 0), 1_000_000, 0)
    assert charged == Decimal("0.945000000")  # 1 USD * 0.9 * 1.05
    sek = project(writer, "100.00", currency="SEK")
    charged_sek = complete(writer, admit(writer, sek, 1_000_000, 0), 1_000_000, 0)
    assert charged_sek == Decimal("10.500000000")  # 1 USD / 0.1 * 1.05
    events = [e for e in app.events.get(account_id(eur)) if type(e).__name__ == "ChargePosted"]
    assert events[0].fx_rate_id == rate["rate_id"] and events[0].fx_rate == Decimal("0.9")


def test_a_daily_budget_counts_reservations_and_resets_the_next_day(writer, priced) -> None:
    project_id = project(writer, "1.00")
    key = writer.execute(c.CreateApiKey(project_id=project_id, daily_budget=Decimal("0.005"))).value
    key_id = UUID(key["key_id"])
    first = admit(
        writer, project_id, 1000, 1000, key_id=key_id, daily_budget=Decimal("0.005")
    )  # 0.00315 reserved
    with pytest.raises(BudgetExceeded):
        admit(writer, project_id, 1000, 1000, key_id=key_id, daily_budget=Decimal("0.005"))
    complete(writer, first, 100, 100)  # actual 0.000315 frees the rest of the day's budget
    admit(writer, project_id, 1000, 1000, key_id=key_id, daily_budget=Decimal("0.005"))


def test_a_second_writer_process_topping_up_is_seen_without_losing_anything(
    writer, app, backend, priced
) -> None:
    project_id = project(writer, "0.001")
    with pytest.raises(InsufficientFunds):
        admit(writer, project_id, 1000, 1000)
    with store_application(backend) as other:
        GroupCommitWriter(other).start().execute(
            c.TopUp(project_id=project_id, amount=Decimal("1"), currency="USD", reference="other")
        )
    writer.evict(
        account_id(project_id), 10_000
    )  # what the projection runner does on seeing the event
    request_id = admit(writer, project_id, 1000, 1000)
    complete(writer, request_id, 10, 10)
    replay = replay_account(app, project_id)
    assert replay.credits == Decimal("1.001") and replay.pending == 0


def test_a_stale_cached_account_conflicts_and_is_retried_on_fresh_state(
    writer, app, backend, priced
) -> None:
    project_id = project(writer, "1.00")
    admit(writer, project_id)  # caches the account in this writer
    with store_application(backend) as other:
        GroupCommitWriter(other).start().execute(
            c.TopUp(project_id=project_id, amount=Decimal("2"), currency="USD", reference="x")
        )
    request_id = admit(
        writer, project_id
    )  # cached version is stale: the save conflicts, then retries
    assert writer.stats["batch_failures"] >= 1  # the conflict was detected, not overwritten
    complete(writer, request_id, 1, 1)
    assert replay_account(app, project_id).credits == Decimal("3.00")


def test_concurrent_submissions_are_group_committed_and_each_caller_gets_its_own_outcome(
    writer, app, priced
) -> None:
    project_id = project(writer, "100.00")
    results: list[Decimal] = []
    lock = threading.Lock()

    def one() -> None:
        request_id = admit(writer, project_id, 100, 100)
        charged = complete(writer, request_id, 100, 100)
        with lock:
            results.append(charged)

    threads = [threading.Thread(target=one) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 64
    assert writer.stats["batches"] < writer.stats["commands"]  # batches held several commands
    replay = replay_account(app, project_id)
    assert replay.charge_events == 64 and replay.pending == 0
    assert replay.posted == sum(results)


def test_a_reservation_cannot_be_settled_twice(writer, priced) -> None:
    project_id = project(writer, "1.00")
    request_id = admit(writer, project_id)
    writer.execute(c.AbandonRequest(request_id=request_id))
    with pytest.raises((IllegalTransition, ReservationNotFound)):
        writer.execute(
            c.FailRequest(
                request_id=request_id,
                http_status=500,
                error_code="x",
                error_type="x",
                message="x",
                latency_ms=1,
            )
        )
    again = writer.execute(c.AbandonRequest(request_id=request_id)).value
    assert again["changed"] is False


async def test_a_caller_that_gives_up_waiting_never_stops_the_writer(
    writer: GroupCommitWriter, priced
) -> None:
    """A client hanging up cancels the coroutine awaiting its command; the command still
    runs, and the writer keeps serving everyone else (it once died here)."""
    import asyncio

    project_id = project(writer, "1.00")
    task = asyncio.ensure_future(
        writer.execute_async(
            c.TopUp(project_id=project_id, amount=Decimal("1"), currency="USD", reference="gave-up")
        )
    )
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for index in range(20):
        abandoned = writer.submit(
            c.TopUp(
                project_id=project_id, amount=Decimal("1"), currency="USD", reference=f"c{index}"
            )
        )
        abandoned.cancel()  # cancelled before the writer answers it
    # Bounded: with the old bug the writer thread was dead and this waited forever.
    outcome = await asyncio.wait_for(
        writer.execute_async(
            c.TopUp(project_id=project_id, amount=Decimal("1"), currency="USD", reference="after")
        ),
        10,
    )
    assert outcome.value["applied"] is True
    references = writer.execute(
        c.TopUp(project_id=project_id, amount=Decimal("1"), currency="USD", reference="gave-up"),
        timeout=10,
    ).value
    assert references["applied"] is False  # the abandoned command was still recorded, once
