"""The trace contract decided by the real handlers (in memory): each refusal before any
reservation, the budget held on the Account's named limit, close and expiry at once,
another project's trace unknown, and the trace and its spans replaying the same."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import pytest

from domain import commands as c
from domain.account import Account
from domain.clock import FixedClock
from domain.errors import DomainError
from domain.ids import account_id, request_aggregate_id
from domain.limits import LimitsHeld, TraceBudgetExceeded, TraceClosed
from domain.request import Request
from domain.trace import (
    CloseTrace,
    ExpireTrace,
    OpenTrace,
    SpanJoined,
    Trace,
    TraceContract,
    TraceDepthExceeded,
    TraceModelNotAllowed,
    TraceNotFound,
    TraceParentNotFound,
    new_trace_id,
    otlp_span_id,
    otlp_trace_id,
    trace_aggregate_id,
)
from tests.support.ledger import MODEL, Ledger, admit_command

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class TravellingClock(FixedClock):
    def travel(self, seconds: float) -> None:
        self.set(self.now() + timedelta(seconds=seconds))


@pytest.fixture
def ledger() -> Ledger:
    ledger = Ledger(TravellingClock(NOW))
    ledger.price()
    ledger.price("gpt-4.1")
    return ledger


def contract(project: UUID, **overrides: object) -> TraceContract:
    fields: dict[str, object] = {
        "trace_id": new_trace_id(),
        "project_id": project,
        "mode": "live",
        "key_id": None,
        "actor_id": None,
        "name": "research agent",
        "budget": Decimal("0.01"),
        "max_depth": 2,
        "allowed_models_requested": (MODEL,),
        "allowed_models": (MODEL,),
    }
    fields.update(overrides)
    return TraceContract(**fields)  # type: ignore[arg-type]


def admit(ledger: Ledger, project: UUID, trace_id: str, parent: str | None = None, **kw):
    command = admit_command(project, ledger.clock.now(), **kw)
    return ledger.run(replace(command, trace=c.TraceJoin(trace_id, parent)))


def refusal(ledger: Ledger, project: UUID, trace_id: str, **kw) -> DomainError:
    with pytest.raises(DomainError) as refused:
        admit(ledger, project, trace_id, **kw)
    return refused.value


def test_a_span_holds_the_trace_budget_on_the_account_and_records_its_place(ledger) -> None:
    project = ledger.project()
    opened = ledger.run(OpenTrace(contract(project)))
    assert opened["status"] == "open" and opened["budget"] == "0.010000000"
    first = admit(ledger, project, opened["id"])
    child = admit(ledger, project, opened["id"], parent=first["request_id"])
    events = list(ledger.app.events.get(account_id(project)))
    holds = [e for e in events if isinstance(e, LimitsHeld)]
    assert [h.request_id for h in holds] == [first["request_id"], child["request_id"]]
    assert holds[0].names == ("trace:" + opened["id"],) or holds[0].names == [
        "trace:" + opened["id"]
    ]
    joined = [
        e
        for e in ledger.app.events.get(request_aggregate_id(child["request_id"]))
        if isinstance(e, SpanJoined)
    ]
    assert [(j.parent_span_id, j.depth) for j in joined] == [(first["request_id"], 2)]
    request = ledger.app.repository.get(request_aggregate_id(child["request_id"]))
    assert isinstance(request, Request) and request.trace_span["depth"] == 2


def test_each_contract_rule_refuses_before_anything_is_reserved(ledger) -> None:
    project = ledger.project()
    trace_id = ledger.run(OpenTrace(contract(project, max_depth=1)))["id"]
    first = admit(ledger, project, trace_id)
    version = ledger.app.repository.get(account_id(project)).version

    too_deep = refusal(ledger, project, trace_id, parent=first["request_id"])
    assert isinstance(too_deep, TraceDepthExceeded) and too_deep.details["max_depth"] == 1
    ghost_parent = refusal(ledger, project, trace_id, parent="lg_req_" + "0" * 24)
    assert isinstance(ghost_parent, TraceParentNotFound)
    unknown = refusal(ledger, project, new_trace_id())
    assert isinstance(unknown, TraceNotFound)
    # A model outside the contract: the same command routed to another model.
    other_model = admit_command(project, ledger.clock.now())
    other_model = replace(
        other_model,
        route=c.Route(model="gpt-4.1", provider="openai", upstream_model="gpt-4.1"),
        trace=c.TraceJoin(trace_id),
    )
    with pytest.raises(TraceModelNotAllowed) as refused:
        ledger.run(other_model)
    assert refused.value.details["allowed"] == [MODEL]
    assert ledger.app.repository.get(account_id(project)).version == version  # nothing held


def test_the_budget_refuses_the_reservation_that_would_pass_it(ledger) -> None:
    project = ledger.project()
    # One request of 1,000 + 1,000 tokens at 0.15/0.60 per Mtok reserves 0.00075 USD + 5 %
    # fee = 0.0007875: two fit in 0.0020, a third does not.
    trace_id = ledger.run(OpenTrace(contract(project, budget=Decimal("0.0020"), max_depth=1)))["id"]
    admit(ledger, project, trace_id)
    admit(ledger, project, trace_id)
    over = refusal(ledger, project, trace_id)
    assert isinstance(over, TraceBudgetExceeded) and over.code == "trace_budget_exceeded"
    assert over.details["spent"] == "0.001575000"


def test_closing_refuses_at_once_and_is_idempotent(ledger) -> None:
    project = ledger.project()
    trace_id = ledger.run(OpenTrace(contract(project)))["id"]
    closed = ledger.run(CloseTrace(trace_id=trace_id, project_id=project, mode="live"))
    assert closed["status"] == "closed" and closed["closed_at"] is not None
    again = ledger.run(CloseTrace(trace_id=trace_id, project_id=project, mode="live"))
    assert again["closed_at"] == closed["closed_at"]
    assert isinstance(refusal(ledger, project, trace_id), TraceClosed)


def test_expiry_refuses_from_its_instant_and_is_recorded_once_observed(ledger) -> None:
    project = ledger.project()
    trace_id = ledger.run(OpenTrace(contract(project, expires_in_s=60)))["id"]
    admit(ledger, project, trace_id)
    ledger.clock.travel(60)
    expired = refusal(ledger, project, trace_id)
    assert isinstance(expired, TraceClosed) and expired.details["reason"] == "expired"
    assert ledger.run(ExpireTrace(trace_id=trace_id, project_id=project, mode="live"))[
        "status"
    ] == ("expired")
    trace = ledger.app.repository.get(trace_aggregate_id(trace_id))
    assert isinstance(trace, Trace) and trace.expired_at == NOW + timedelta(seconds=60)
    assert ledger.run(ExpireTrace(trace_id=trace_id, project_id=project, mode="live"))
    assert len(list(ledger.app.events.get(trace_aggregate_id(trace_id)))) == 2  # once


def test_another_projects_trace_is_unknown_and_cannot_be_closed(ledger) -> None:
    mine, theirs = ledger.project(), ledger.project()
    trace_id = ledger.run(OpenTrace(contract(theirs)))["id"]
    assert isinstance(refusal(ledger, mine, trace_id), TraceNotFound)
    with pytest.raises(TraceNotFound):
        ledger.run(CloseTrace(trace_id=trace_id, project_id=mine, mode="live"))
    # Nor does a test-mode key see a live trace of its own project.
    with pytest.raises(TraceNotFound):
        ledger.run(CloseTrace(trace_id=trace_id, project_id=theirs, mode="test"))


@pytest.mark.parametrize(
    ("override", "param"),
    [
        ({"name": " "}, "name"),
        ({"budget": Decimal(0)}, "budget"),
        ({"max_depth": 0}, "max_depth"),
        ({"max_depth": 33}, "max_depth"),
        ({"allowed_models_requested": ()}, "allowed_models"),
        ({"expires_in_s": 0}, "expires_in_s"),
        ({"metadata": (("k", "v" * 257),)}, "metadata"),
        ({"trace_id": "trace-1"}, "trace_id"),
    ],
)
def test_a_contract_out_of_bounds_is_refused_and_names_its_field(
    ledger, override: dict, param: str
) -> None:
    project = ledger.project()
    with pytest.raises(DomainError) as refused:
        ledger.run(OpenTrace(contract(project, **override)))
    assert refused.value.details["param"] == param


def test_otlp_ids_have_the_widths_otlp_requires() -> None:
    trace_id = new_trace_id()
    assert len(otlp_trace_id(trace_id)) == 32
    assert otlp_span_id("lg_req_0123456789abcdef01234567") == "0123456789abcdef"
    assert len(otlp_span_id(trace_id)) == 16


def test_the_account_replays_to_the_same_state_with_trace_limits(ledger) -> None:
    project = ledger.project()
    trace_id = ledger.run(OpenTrace(contract(project)))["id"]
    admit(ledger, project, trace_id)
    ledger.run(CloseTrace(trace_id=trace_id, project_id=project, mode="live"))
    account = ledger.app.repository.get(account_id(project))
    assert isinstance(account, Account)
    assert account.__dict__["limit_holds"]  # the open reservation still holds the trace
