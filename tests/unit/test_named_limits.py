"""Named limits on the Account (domain/limits.py): a reservation holds against a set of them,
a closed or expired limit refuses at once, settlement keeps what was charged, replay and
snapshots restore the same state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import limits
from domain.account import Account
from domain.application import LedgerApplication
from domain.errors import InsufficientFunds
from domain.limits import (
    CredentialBudgetExceeded,
    TraceBudgetExceeded,
    TraceClosed,
    close_limit,
    limit_name,
    limit_status,
    open_limit,
)
from tests.support.ledger import post_plain_charge

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
TRACE = limit_name("trace", "lg_tr_" + "a" * 32)
CREDENTIAL = limit_name("credential", "jti-1")


def account(balance: str = "100") -> Account:
    acc = Account.open(project_id=uuid4(), currency="EUR", account_id=uuid4())
    acc.top_up(amount=Decimal(balance), currency="EUR", reference="r", now=NOW)
    return acc


def reserve(acc: Account, request_id: str, amount: str, *names: str, now: datetime = NOW) -> None:
    acc.reserve(
        request_id=request_id,
        amount=Decimal(amount),
        key_id=None,
        daily_budget=None,
        now=now,
        limits=names,
    )


def test_a_reservation_past_the_cap_is_refused_with_the_kinds_code_and_records_nothing() -> None:
    acc = account()
    open_limit(acc, name=TRACE, cap=Decimal("1.00"), expires_at=None, now=NOW)
    reserve(acc, "r1", "0.60", TRACE)
    events_before = len(acc.pending_events)
    with pytest.raises(TraceBudgetExceeded) as refused:
        reserve(acc, "r2", "0.41", TRACE)
    assert refused.value.code == "trace_budget_exceeded"
    assert refused.value.details["spent"] == "0.600000000"
    assert len(acc.pending_events) == events_before and not acc.has_reservation("r2")
    reserve(acc, "r3", "0.40", TRACE)  # exactly up to the cap is allowed
    assert limit_status(acc, TRACE, NOW)["pending"] == Decimal("1.00")


def test_a_reservation_holds_every_named_limit_and_the_tightest_refuses() -> None:
    acc = account()
    open_limit(acc, name=TRACE, cap=Decimal("5"), expires_at=None, now=NOW)
    open_limit(acc, name=CREDENTIAL, cap=Decimal("1"), expires_at=None, now=NOW)
    reserve(acc, "r1", "0.9", TRACE, CREDENTIAL)
    with pytest.raises(CredentialBudgetExceeded):
        reserve(acc, "r2", "0.2", TRACE, CREDENTIAL)
    reserve(acc, "r3", "0.2", TRACE)  # the credential is not named: only the trace counts
    assert limit_status(acc, TRACE, NOW)["pending"] == Decimal("1.1")
    assert limit_status(acc, CREDENTIAL, NOW)["pending"] == Decimal("0.9")


def test_settling_keeps_the_charge_and_gives_back_the_rest_of_the_hold() -> None:
    acc = account()
    open_limit(acc, name=TRACE, cap=Decimal("1"), expires_at=None, now=NOW)
    reserve(acc, "r1", "0.8", TRACE)
    post_plain_charge(acc, "r1", Decimal("0.3"), NOW)
    reserve(acc, "r2", "0.5", TRACE)
    acc.release(request_id="r2", reason="failed", now=NOW)
    status = limit_status(acc, TRACE, NOW)
    assert status["pending"] == 0 and status["posted"] == Decimal("0.3")
    reserve(acc, "r3", "0.7", TRACE)  # 0.3 posted + 0.7 = the cap


def test_a_charge_above_the_estimate_is_collected_only_up_to_the_limits_headroom() -> None:
    acc = account()
    open_limit(acc, name=TRACE, cap=Decimal("1"), expires_at=None, now=NOW)
    reserve(acc, "r1", "0.5", TRACE)
    reserve(acc, "r2", "0.4", TRACE)
    debited = post_plain_charge(acc, "r1", Decimal("0.9"), NOW)  # upstream said more
    assert debited == Decimal("0.6")  # 0.5 held + 0.1 headroom; the rest is a shortfall
    [charge] = [e for e in acc.pending_events if isinstance(e, Account.ChargePosted)]
    assert charge.shortfall_amount == Decimal("0.3")
    status = limit_status(acc, TRACE, NOW)
    assert status["posted"] + status["pending"] == Decimal("1")


def test_closing_refuses_every_later_reservation_while_pending_ones_still_settle() -> None:
    acc = account()
    open_limit(acc, name=TRACE, cap=Decimal("1"), expires_at=None, now=NOW)
    reserve(acc, "r1", "0.2", TRACE)
    assert close_limit(acc, name=TRACE, reason="closed", now=NOW)
    assert not close_limit(acc, name=TRACE, reason="closed", now=NOW)  # once
    with pytest.raises(TraceClosed) as refused:
        reserve(acc, "r2", "0.1", TRACE)
    assert refused.value.code == "trace_closed"
    post_plain_charge(acc, "r1", Decimal("0.1"), NOW)
    # Closed and settled: dropped from the state, and still refused.
    assert limit_status(acc, TRACE, NOW) is None
    with pytest.raises(TraceClosed):
        reserve(acc, "r3", "0.1", TRACE)


def test_an_expired_limit_refuses_from_its_expiry_instant_without_any_event() -> None:
    acc = account()
    expires = NOW + timedelta(seconds=60)
    open_limit(acc, name=TRACE, cap=None, expires_at=expires, now=NOW)
    reserve(acc, "r1", "0.1", TRACE, now=expires - timedelta(microseconds=1))
    with pytest.raises(TraceClosed) as refused:
        reserve(acc, "r2", "0.1", TRACE, now=expires)
    assert refused.value.details["reason"] == "expired"


def test_an_unknown_limit_is_refused_as_closed_and_the_balance_check_comes_first() -> None:
    acc = account("1")
    with pytest.raises(TraceClosed):
        reserve(acc, "r1", "0.1", TRACE)
    open_limit(acc, name=TRACE, cap=Decimal("10"), expires_at=None, now=NOW)
    with pytest.raises(InsufficientFunds):
        reserve(acc, "r2", "2", TRACE)


def test_opening_twice_records_once() -> None:
    acc = account()
    assert open_limit(acc, name=TRACE, cap=Decimal("1"), expires_at=None, now=NOW)
    assert not open_limit(acc, name=TRACE, cap=Decimal("9"), expires_at=None, now=NOW)
    assert limit_status(acc, TRACE, NOW)["cap"] == Decimal("1")


def test_the_limits_survive_storage_and_replay_with_the_same_state() -> None:
    app = LedgerApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    acc = account()
    open_limit(acc, name=TRACE, cap=Decimal("1"), expires_at=NOW + timedelta(hours=1), now=NOW)
    open_limit(acc, name=CREDENTIAL, cap=None, expires_at=None, now=NOW)
    reserve(acc, "r1", "0.5", TRACE, CREDENTIAL)
    reserve(acc, "r2", "0.2", TRACE)
    post_plain_charge(acc, "r2", Decimal("0.1"), NOW)
    close_limit(acc, name=CREDENTIAL, reason="revoked", now=NOW)
    app.save(acc)
    loaded = app.repository.get(acc.id)
    assert loaded.__dict__ == acc.__dict__
    snapshot = Account.Snapshot.take(acc)  # type: ignore[attr-defined]
    app.snapshots.put([snapshot])  # type: ignore[union-attr]
    assert app.repository.get(acc.id).__dict__ == acc.__dict__


amounts = st.decimals(min_value=0, max_value=1, places=2)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["reserve", "post", "release"]), st.integers(0, 5), amounts),
        max_size=50,
    )
)
def test_whatever_the_sequence_a_limits_posted_plus_pending_never_passes_its_cap(ops) -> None:
    acc = account("1000")
    cap = Decimal("2")
    open_limit(acc, name=TRACE, cap=cap, expires_at=None, now=NOW)
    for operation, slot, amount in ops:
        request_id = f"r{slot}"
        try:
            if operation == "reserve":
                reserve(acc, request_id, str(amount), TRACE)
            elif operation == "post":
                post_plain_charge(acc, request_id, amount * 2, NOW)
            else:
                acc.release(request_id=request_id, reason="t", now=NOW)
        except limits.NamedLimitExceeded:
            pass
        except Exception as error:  # a duplicate reservation, a settled one: refused
            assert getattr(error, "code", "") in {"duplicate_request", "reservation_not_found"}
        status = limit_status(acc, TRACE, NOW)
        assert status is not None and status["pending"] + status["posted"] <= cap
        assert status["pending"] >= 0
