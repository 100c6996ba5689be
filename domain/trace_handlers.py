"""Trace commands and the trace steps of admission (domain/trace.py has the rules).

Registered into the writer's handler table with `HANDLERS.update(TRACE_HANDLERS)`. Opening
and closing a trace change two aggregates in one transaction: the Trace, and the Account
that keeps the trace's budget as a named limit (domain/limits.py), so a close is seen by
every later reservation at once, in this process or another.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.account import Account
from domain.commands import RequestFacts, TraceJoin, UnitOfWorkLike
from domain.errors import InvalidCommand, UnknownProject
from domain.ids import account_id, request_aggregate_id
from domain.limits import close_limit, limit_status, open_limit
from domain.request import Request
from domain.trace import (
    CloseTrace,
    ExpireTrace,
    OpenTrace,
    SpanPlan,
    Trace,
    TraceNotFound,
    plan_span,
    trace_aggregate_id,
    trace_limit_name,
    trace_view,
)


def _account(uow: UnitOfWorkLike, project_id: UUID, mode: str) -> Account:
    account = uow.find(account_id(project_id, mode))
    if not isinstance(account, Account):
        raise UnknownProject(f"no {mode} account for project {project_id}")
    return account


def _trace(uow: UnitOfWorkLike, trace_id: str, project_id: UUID, mode: str) -> Trace:
    trace = uow.find(trace_aggregate_id(trace_id))
    if not isinstance(trace, Trace) or trace.project_id != project_id or trace.mode != mode:
        # Another project's trace reads exactly like one that does not exist.
        raise TraceNotFound(f"no trace {trace_id} in this project", param="trace_id")
    return trace


def _view(uow: UnitOfWorkLike, trace: Trace, now: datetime) -> dict[str, Any]:
    account = uow.find(account_id(trace.project_id, trace.mode))
    live = limit_status(account, trace_limit_name(trace.trace_id), now) if account else None
    return trace_view(trace, now, live)


def open_trace(cmd: OpenTrace, uow: UnitOfWorkLike) -> dict[str, Any]:
    contract = cmd.contract
    now = uow.clock.now()
    account = _account(uow, contract.project_id, contract.mode)
    existing = uow.find(trace_aggregate_id(contract.trace_id))
    if existing is not None:
        # The same open again (a client-chosen id retried): what was opened, not a second.
        if isinstance(existing, Trace) and existing.project_id == contract.project_id:
            return _view(uow, existing, now)
        raise InvalidCommand("this trace id is taken", param="trace_id")
    trace = Trace.open(contract=contract, currency=account.currency, now=now)
    open_limit(
        account,
        name=trace_limit_name(contract.trace_id),
        cap=trace.budget,
        expires_at=trace.expires_at,
        now=now,
    )
    uow.add(trace)
    return _view(uow, trace, now)


def close_trace(cmd: CloseTrace, uow: UnitOfWorkLike) -> dict[str, Any]:
    """Idempotent: closing an ended trace records nothing and shows it as it is."""
    now = uow.clock.now()
    trace = _trace(uow, cmd.trace_id, cmd.project_id, cmd.mode)
    account = _account(uow, trace.project_id, trace.mode)
    if trace.expiry_unrecorded(now):
        trace.expire(now=now)
        close_limit(account, name=trace_limit_name(trace.trace_id), reason="expired", now=now)
    elif trace.close(key_id=cmd.key_id, now=now):
        close_limit(account, name=trace_limit_name(trace.trace_id), reason="closed", now=now)
    return _view(uow, trace, now)


def expire_trace(cmd: ExpireTrace, uow: UnitOfWorkLike) -> dict[str, Any]:
    now = uow.clock.now()
    trace = _trace(uow, cmd.trace_id, cmd.project_id, cmd.mode)
    if trace.expire(now=now):
        account = _account(uow, trace.project_id, trace.mode)
        close_limit(account, name=trace_limit_name(trace.trace_id), reason="expired", now=now)
    return _view(uow, trace, now)


def admit_to_trace(
    uow: UnitOfWorkLike, join: TraceJoin, facts: RequestFacts, model: str, now: datetime
) -> SpanPlan:
    """The trace steps of admission, before the reservation: raises TraceNotFound,
    TraceClosed, TraceModelNotAllowed, TraceParentNotFound or TraceDepthExceeded. The
    budget is the Account's to decide (the plan's `limit`, held with the reservation)."""
    trace = uow.find(trace_aggregate_id(join.trace_id))
    parent = None
    if join.parent_span_id is not None:
        parent = uow.find(request_aggregate_id(join.parent_span_id))
    return plan_span(
        trace, parent, join, project_id=facts.project_id, mode=facts.mode, model=model, now=now
    )


def check_failover_model(uow: UnitOfWorkLike, request: Request, model: str) -> None:
    """A failover target must be inside the trace's allowed models too (the dispatcher
    skips a target this refuses)."""
    span = getattr(request, "trace_span", None)
    if span is None:
        return
    trace = uow.find(trace_aggregate_id(span["trace_id"]))
    if isinstance(trace, Trace):
        trace.check_model(model)


TRACE_HANDLERS: dict[type, Callable[[Any, Any], Any]] = {
    OpenTrace: open_trace,
    CloseTrace: close_trace,
    ExpireTrace: expire_trace,
}
