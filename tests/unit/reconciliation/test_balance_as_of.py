from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.errors import CurrencyMismatch, UnknownProject
from reconciliation.ledger import balance_as_of
from tests.unit.reconciliation.builders import LedgerBuilder, at


def ledger() -> LedgerBuilder:
    return (
        LedgerBuilder()
        .topup("2026-09-01 08:00", "10")
        .reserve("2026-09-01 09:00", "req_1", "1.5")
        .charge("2026-09-01 09:05", "req_1", "0.4")
        .release("2026-09-01 09:05", "req_1", "1.1")
        .reserve("2026-09-01 10:00", "req_2", "2")
        .release("2026-09-01 11:00", "req_2", "2")  # failed request: released, never charged
        .adjustment("2026-09-02 00:00", "-0.5")
    )


def test_before_any_entry_everything_is_zero_but_the_currency_is_known():
    balance = balance_as_of(ledger().lazy(), "proj_a", at("2026-08-31 23:59"))
    assert (balance.credits, balance.charged, balance.pending, balance.available) == (0, 0, 0, 0)
    assert balance.currency == "EUR"
    assert balance.position == 0


def test_an_open_reservation_is_pending_and_not_available():
    balance = balance_as_of(ledger().lazy(), "proj_a", at("2026-09-01 09:01"))
    assert balance.credits == Decimal("10")
    assert balance.pending == Decimal("1.5")
    assert balance.available == Decimal("8.5")
    assert balance.position == 2


def test_a_charge_settles_the_whole_reservation_and_only_the_charge_is_spent():
    balance = balance_as_of(ledger().lazy(), "proj_a", at("2026-09-01 09:30"))
    assert balance.charged == Decimal("0.4")
    assert balance.pending == 0
    assert balance.available == Decimal("9.6")
    assert balance.balance == Decimal("9.6")


def test_a_release_without_charge_settles_a_failed_request():
    during = balance_as_of(ledger().lazy(), "proj_a", at("2026-09-01 10:30"))
    after = balance_as_of(ledger().lazy(), "proj_a", at("2026-09-01 11:00"))
    assert during.pending == Decimal("2") and during.available == Decimal("7.6")
    assert after.pending == 0 and after.available == Decimal("9.6")


def test_an_entry_stamped_exactly_at_the_instant_is_included():
    balance = balance_as_of(ledger().lazy(), "proj_a", at("2026-09-01 09:05"))
    assert balance.charged == Decimal("0.4")
    assert balance.position == 4


def test_a_negative_adjustment_reduces_credits_without_editing_anything():
    balance = balance_as_of(ledger().lazy(), "proj_a", at("2026-09-03 00:00"))
    assert balance.credits == Decimal("9.5")
    assert balance.available == Decimal("9.1")
    assert balance.position == 7


def test_other_projects_do_not_leak_into_the_balance():
    builder = ledger()
    other = LedgerBuilder(project_id="proj_b", rows=builder.rows)
    other.topup("2026-09-01 08:30", "1000")
    balance = balance_as_of(other.lazy(), "proj_a", at("2026-09-03 00:00"))
    assert balance.credits == Decimal("9.5")


def test_a_reservation_without_request_id_stays_pending_because_nothing_can_settle_it():
    builder = LedgerBuilder().topup("2026-09-01 08:00", "5").reserve("2026-09-01 09:00", None, "1")
    assert balance_as_of(builder.lazy(), "proj_a", at("2026-09-02 00:00")).pending == Decimal("1")


def test_a_naive_instant_is_refused_rather_than_guessed():
    with pytest.raises(ValueError, match="timezone-aware"):
        balance_as_of(ledger().lazy(), "proj_a", datetime(2026, 9, 1, 12, 0))


def test_an_unknown_project_is_a_clear_error():
    with pytest.raises(UnknownProject):
        balance_as_of(ledger().lazy(), "proj_nope", at("2026-09-03 00:00"))


def test_a_project_with_entries_in_two_currencies_is_refused():
    builder = ledger()
    builder.rows.append({**builder.rows[0], "position": 99, "entry_id": "x:99", "currency": "USD"})
    with pytest.raises(CurrencyMismatch):
        balance_as_of(builder.lazy(), "proj_a", at("2026-09-03 00:00"))


# Each step: (kind, request number, amount in cents, minutes after start)
steps = st.lists(
    st.tuples(
        st.sampled_from(["topup", "reservation", "charge", "release", "adjustment"]),
        st.integers(0, 5),
        st.integers(-500, 5000),
        st.integers(0, 120),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps, cutoff_minutes=st.integers(0, 130))
def test_the_polars_replay_agrees_with_a_plain_python_replay(steps, cutoff_minutes):
    start = at("2026-09-01 00:00")
    builder = LedgerBuilder().topup("2026-08-31 00:00", "1")
    # Entries must be in position order = time order, as in the real log.
    for kind, request, cents, minutes in sorted(steps, key=lambda step: step[3]):
        amount = Decimal(cents if kind == "adjustment" else abs(cents)) / 100
        when = (start + timedelta(minutes=minutes)).strftime("%Y-%m-%d %H:%M")
        request_id = f"req_{request}"
        if kind == "topup":
            builder.topup(when, str(amount))
        elif kind == "adjustment":
            builder.adjustment(when, str(amount))
        elif kind == "reservation":
            builder.reserve(when, request_id, str(amount))
        elif kind == "release":
            builder.release(when, request_id, str(amount))
        else:
            builder.charge(when, request_id, str(amount))
    cutoff = start + timedelta(minutes=cutoff_minutes)

    included = [row for row in builder.rows if row["occurred_at"] <= cutoff]
    credits = sum(r["amount"] for r in included if r["entry_type"] in ("topup", "adjustment"))
    charged = sum((r["amount"] for r in included if r["entry_type"] == "charge"), Decimal(0))
    settled = {r["request_id"] for r in included if r["entry_type"] in ("charge", "release")}
    pending = sum(
        (
            r["amount"]
            for r in included
            if r["entry_type"] == "reservation" and r["request_id"] not in settled
        ),
        Decimal(0),
    )

    balance = balance_as_of(builder.lazy(), "proj_a", cutoff)
    assert balance.credits == credits
    assert balance.charged == charged
    assert balance.pending == pending
    assert balance.available == credits - charged - pending
    assert balance.position == max(r["position"] for r in included)
