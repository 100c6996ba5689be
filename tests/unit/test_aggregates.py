"""Aggregates decide before they act: a refused command leaves no event and no change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.account import Account
from domain.errors import DomainError, IllegalTransition, InsufficientFunds, ReservationNotFound
from domain.request import ALLOWED_TRANSITIONS, TERMINAL_STATES, Request
from tests.support.builders import received_request, request_facts
from tests.support.ledger import post_plain_charge

NOW = datetime(2026, 11, 21, tzinfo=UTC)


def account(balance: str = "1.00") -> Account:
    acc = Account.open(project_id=uuid4(), currency="USD", account_id=uuid4())
    if Decimal(balance) > 0:
        acc.top_up(amount=Decimal(balance), currency="USD", reference="r", now=NOW)
    return acc


def charge(acc: Account, request_id: str, amount: str) -> Decimal:
    return post_plain_charge(acc, request_id, Decimal(amount), NOW)


def test_a_refused_reservation_triggers_no_event() -> None:
    acc = account("1.00")
    pending_before = len(acc.pending_events)
    with pytest.raises(InsufficientFunds):
        acc.reserve(request_id="a", amount=Decimal("1.01"), key_id=None, daily_budget=None, now=NOW)
    assert len(acc.pending_events) == pending_before and acc.available == Decimal("1.00")


def test_posting_without_a_reservation_is_refused() -> None:
    with pytest.raises(ReservationNotFound):
        charge(account(), "nope", "0.1")


operations = st.lists(
    st.tuples(
        st.sampled_from(["topup", "reserve", "post", "release"]),
        st.integers(0, 9),
        st.decimals(min_value=0, max_value=2, places=3),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_any_sequence_of_operations_keeps_available_equal_to_credits_minus_posted_minus_pending_and_never_negative(
    ops,
) -> None:
    acc = account("0")
    credits = Decimal(0)
    for index, (op, slot, amount) in enumerate(ops):
        request_id = f"r{slot}"
        try:
            if op == "topup" and amount > 0:
                acc.top_up(amount=amount, currency="USD", reference=f"t{index}", now=NOW)
                credits += amount
            elif op == "reserve":
                acc.reserve(
                    request_id=request_id, amount=amount, key_id=None, daily_budget=None, now=NOW
                )
            elif op == "post":
                charge(acc, request_id, str(amount))
            elif op == "release":
                acc.release(request_id=request_id, reason="x", now=NOW)
        except DomainError:  # refusals are expected; anything else is a bug and fails the test
            pass
        assert acc.available >= 0
        assert acc.available == acc.credits - acc.posted - acc.pending_total
        assert acc.pending_total == sum(acc.pending.values())
        assert acc.credits == credits
    # Replaying the recorded events rebuilds the same state.
    replayed = None
    for event in acc.collect_events():
        replayed = event.mutate(replayed)
    assert replayed is not None
    assert (replayed.credits, replayed.posted, replayed.pending_total) == (
        acc.credits,
        acc.posted,
        acc.pending_total,
    )


def _request() -> Request:
    facts = request_facts(
        uuid4(),
        at=NOW,
        request_id="lg_req_x",
        actor_id="a",
        prompt_chars=1,
        deadline=timedelta(minutes=1),
    )
    return received_request(facts)


def test_every_transition_outside_the_table_is_refused() -> None:
    states = set(ALLOWED_TRANSITIONS) | set(TERMINAL_STATES)
    for state in states:
        for target in states:
            request = _request()
            request.status = state
            allowed = target in ALLOWED_TRANSITIONS.get(state, frozenset())
            if allowed:
                request.check_transition(target)
            else:
                with pytest.raises(IllegalTransition):
                    request.check_transition(target)


def test_terminal_states_allow_nothing() -> None:
    for state in TERMINAL_STATES:
        assert not ALLOWED_TRANSITIONS.get(state)
