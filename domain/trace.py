"""Governed traces: an agent's operation with a contract, and the spans (requests) in it.

A trace is opened with an operation contract: a name, a budget in the project's currency,
a maximum depth, the models it may call (resolved through the catalog when it is opened:
names, aliases and shorthands become model names), an optional expiry and small metadata.
Each chat or embeddings request that joins it is a span (span id = request id) whose parent
is another span of the trace or the trace's root.

The contract is enforced at admission, inside the writer, before any provider is called:
unknown (or another project's) trace → TraceNotFound; closed or expired → TraceClosed;
a model outside the contract → TraceModelNotAllowed; deeper than `max_depth` →
TraceDepthExceeded; over the budget → TraceBudgetExceeded, decided by the Account's named
limit `trace:<id>` (domain/limits.py), so concurrent requests overshoot it by zero.
Closing the trace closes that limit on the Account in the same transaction, so every later
reservation sees it at once; expiry is a rule on time that the limit applies by itself
(`expires_at`), recorded as Trace.Expired when first observed or swept.

Trace ids are `lg_tr_` + 32 hex digits (the 16 bytes are the OTLP trace id). A request
naming any other trace id (a free-form correlation label, as before governed traces
existed) joins no governed trace: the label is only recorded on the request.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.commands import Command, TraceJoin
from domain.errors import DomainError, IllegalTransition, InvalidCommand
from domain.ids import NAMESPACE, REQUEST_ID_PREFIX
from domain.limits import KIND_TRACE, TraceClosed, limit_name
from domain.money import quantize_internal
from domain.request import Request

TRACE_ID_PREFIX = "lg_tr_"
TRACE_ID_SYNTAX = re.compile(r"lg_tr_[0-9a-f]{32}")
TRACE_NAME_CHARS_MAX = 200
MAX_DEPTH_MAX = 32  # an agent tree deeper than this is a runaway loop, not a plan
MAX_DEPTH_DEFAULT = 8
ALLOWED_MODELS_MAX = 32  # entries as given (names, aliases, shorthands)
RESOLVED_MODELS_MAX = 256  # model names they resolve to
EXPIRES_IN_S_MAX = 7 * 24 * 3600  # a week: longer-lived work opens a new trace
BUDGET_MAX = Decimal("1000000")  # in the project's currency
METADATA_ENTRIES_MAX = 16
METADATA_KEY_CHARS_MAX = 64
METADATA_VALUE_CHARS_MAX = 256

STATUS_OPEN = "open"
STATUS_CLOSED = "closed"
STATUS_EXPIRED = "expired"


class TraceNotFound(DomainError):
    """No such trace in the caller's project (another project's reads the same)."""

    code = "trace_not_found"


class TraceModelNotAllowed(DomainError):
    """The routed model is outside the trace's `allowed_models`. details: model, allowed."""

    code = "trace_model_not_allowed"


class TraceDepthExceeded(DomainError):
    """The span would be deeper than the trace's `max_depth`. details: depth, max_depth."""

    code = "trace_depth_exceeded"


class TraceParentNotFound(DomainError):
    """`X-Parent-Span-Id` names no span of this trace."""

    code = "trace_parent_not_found"


def new_trace_id() -> str:
    return TRACE_ID_PREFIX + secrets.token_hex(16)


def is_governed_trace_id(value: str | None) -> bool:
    return value is not None and TRACE_ID_SYNTAX.fullmatch(value) is not None


def trace_aggregate_id(trace_id: str) -> UUID:
    return uuid5(NAMESPACE, f"trace:{trace_id}")


def trace_limit_name(trace_id: str) -> str:
    return limit_name(KIND_TRACE, trace_id)


def otlp_trace_id(trace_id: str) -> str:
    """The 16-byte OTLP trace id (32 lowercase hex digits) of a governed trace."""
    return trace_id[len(TRACE_ID_PREFIX) :]


def otlp_span_id(span_id: str) -> str:
    """The 8-byte OTLP span id (16 hex digits) of a span: a request's, or a trace's root
    (its own id). Request ids are random hex, so their first 16 digits are; other ids are
    hashed to the same width."""
    if span_id.startswith(REQUEST_ID_PREFIX):
        digits = span_id[len(REQUEST_ID_PREFIX) :]
        if len(digits) >= 16 and all(ch in "0123456789abcdef" for ch in digits[:16]):
            return digits[:16]
    return hashlib.sha256(span_id.encode()).hexdigest()[:16]


class Trace(Aggregate):
    class Opened(Aggregate.Created):
        trace_id: str
        project_id: UUID
        mode: str  # the opening key's mode: a test-mode trace reserves on the test balance
        key_id: UUID | None
        actor_id: str | None
        name: str
        budget: Decimal
        currency: str
        max_depth: int
        allowed_models_requested: tuple[str, ...]  # as given: names, aliases, shorthands
        allowed_models: tuple[str, ...]  # the catalog's model names they resolved to
        expires_at: datetime | None
        metadata: tuple[tuple[str, str], ...]  # screened for PII before it gets here
        opened_at: datetime

    class Closed(Aggregate.Event):
        key_id: UUID | None
        closed_at: datetime

        def apply(self, aggregate: Any) -> None:
            aggregate.closed_at = self.closed_at

    class Expired(Aggregate.Event):
        expires_at: datetime
        observed_at: datetime  # when the gateway (or a sweep) first saw it expired

        def apply(self, aggregate: Any) -> None:
            aggregate.expired_at = self.observed_at

    def __init__(
        self,
        trace_id: str,
        project_id: UUID,
        mode: str,
        key_id: UUID | None,
        actor_id: str | None,
        name: str,
        budget: Decimal,
        currency: str,
        max_depth: int,
        allowed_models_requested: tuple[str, ...],
        allowed_models: tuple[str, ...],
        expires_at: datetime | None,
        metadata: tuple[tuple[str, str], ...],
        opened_at: datetime,
    ) -> None:
        self.trace_id = trace_id
        self.project_id = project_id
        self.mode = mode
        self.key_id = key_id
        self.actor_id = actor_id
        self.name = name
        self.budget = budget
        self.currency = currency
        self.max_depth = max_depth
        self.allowed_models_requested = list(allowed_models_requested)
        self.allowed_models = list(allowed_models)
        self.expires_at = expires_at
        self.metadata = [list(pair) for pair in metadata]
        self.opened_at = opened_at
        self.closed_at: datetime | None = None
        self.expired_at: datetime | None = None  # recorded expiry (observed)

    @classmethod
    def open(cls, *, contract: TraceContract, currency: str, now: datetime) -> Trace:
        contract.check()
        expires_at = (
            None
            if contract.expires_in_s is None
            else now + timedelta(seconds=contract.expires_in_s)
        )
        return cls._create(
            cls.Opened,
            id=trace_aggregate_id(contract.trace_id),
            trace_id=contract.trace_id,
            project_id=contract.project_id,
            mode=contract.mode,
            key_id=contract.key_id,
            actor_id=contract.actor_id,
            name=contract.name,
            budget=quantize_internal(contract.budget),
            currency=currency,
            max_depth=contract.max_depth,
            allowed_models_requested=contract.allowed_models_requested,
            allowed_models=contract.allowed_models,
            expires_at=expires_at,
            metadata=contract.metadata,
            opened_at=now,
        )

    # --- queries -------------------------------------------------------------------------

    def status_at(self, now: datetime) -> str:
        if self.closed_at is not None:
            return STATUS_CLOSED
        if self.expired_at is not None or (self.expires_at is not None and now >= self.expires_at):
            return STATUS_EXPIRED
        return STATUS_OPEN

    def expiry_unrecorded(self, now: datetime) -> bool:
        return self.status_at(now) == STATUS_EXPIRED and self.expired_at is None

    def check_open(self, now: datetime) -> None:
        status = self.status_at(now)
        if status != STATUS_OPEN:
            raise TraceClosed(
                f"trace {self.trace_id} is {status}; it takes no more requests",
                trace_id=self.trace_id,
                reason=status,
            )

    def check_model(self, model: str) -> None:
        if model not in self.allowed_models:
            raise TraceModelNotAllowed(
                f"the model {model[:80]!r} is outside this trace's allowed_models",
                model=model[:80],
                allowed=list(self.allowed_models),
                param="model",
            )

    # --- commands ------------------------------------------------------------------------

    def close(self, *, key_id: UUID | None, now: datetime) -> bool:
        """False (nothing recorded) when the trace has already ended."""
        if self.status_at(now) != STATUS_OPEN:
            return False
        self.trigger_event(self.Closed, key_id=key_id, closed_at=now)
        return True

    def expire(self, *, now: datetime) -> bool:
        """Record the expiry once it has happened; False when not due or recorded already."""
        if not self.expiry_unrecorded(now):
            return False
        if self.closed_at is not None or self.expires_at is None:
            raise IllegalTransition("only an open trace with an expiry can expire")
        self.trigger_event(self.Expired, expires_at=self.expires_at, observed_at=now)
        return True


class SpanJoined(Request.Event):
    """The request is a span of a governed trace: its parent (another span, or None for
    the trace's root) and its depth (root's children are depth 1). Recorded at admission,
    with the reservation that held the trace's budget."""

    span_id: str  # the request id
    trace_id: str
    parent_span_id: str | None
    depth: int
    endpoint: str  # chat.completions | embeddings
    started_at: datetime  # the request's reception: the span's start
    joined_at: datetime

    def apply(self, aggregate: Any) -> None:
        aggregate.trace_span = {
            "trace_id": self.trace_id,
            "parent_span_id": self.parent_span_id,
            "depth": self.depth,
        }


# --- the contract and the commands ----------------------------------------------------------


@dataclass(frozen=True)
class TraceContract:
    """What `POST /v1/traces` asks for, already parsed and resolved by the gateway (model
    names through the catalog, metadata screened for PII)."""

    trace_id: str
    project_id: UUID
    mode: str
    key_id: UUID | None
    actor_id: str | None
    name: str
    budget: Decimal
    max_depth: int
    allowed_models_requested: tuple[str, ...]
    allowed_models: tuple[str, ...]
    expires_in_s: int | None = None
    metadata: tuple[tuple[str, str], ...] = ()

    def check(self) -> None:
        if not is_governed_trace_id(self.trace_id):
            raise InvalidCommand("a trace id is lg_tr_ and 32 hex digits", param="trace_id")
        if not self.name.strip() or len(self.name) > TRACE_NAME_CHARS_MAX:
            raise InvalidCommand(
                f"'name' must have 1 to {TRACE_NAME_CHARS_MAX} characters", param="name"
            )
        if not isinstance(self.budget, Decimal) or not (0 < self.budget <= BUDGET_MAX):
            raise InvalidCommand(
                f"'budget' must be a positive amount of at most {BUDGET_MAX}", param="budget"
            )
        if isinstance(self.max_depth, bool) or not 1 <= self.max_depth <= MAX_DEPTH_MAX:
            raise InvalidCommand(
                f"'max_depth' must be an integer from 1 to {MAX_DEPTH_MAX}", param="max_depth"
            )
        if not 1 <= len(self.allowed_models_requested) <= ALLOWED_MODELS_MAX:
            raise InvalidCommand(
                f"'allowed_models' must list 1 to {ALLOWED_MODELS_MAX} models",
                param="allowed_models",
            )
        if not 1 <= len(self.allowed_models) <= RESOLVED_MODELS_MAX:
            raise InvalidCommand(
                "'allowed_models' resolves to no model (or too many)", param="allowed_models"
            )
        if self.expires_in_s is not None and not 1 <= self.expires_in_s <= EXPIRES_IN_S_MAX:
            raise InvalidCommand(
                f"'expires_in_s' must be from 1 to {EXPIRES_IN_S_MAX} seconds",
                param="expires_in_s",
            )
        if len(self.metadata) > METADATA_ENTRIES_MAX:
            raise InvalidCommand(
                f"'metadata' has at most {METADATA_ENTRIES_MAX} entries", param="metadata"
            )
        for key, value in self.metadata:
            if not key or len(key) > METADATA_KEY_CHARS_MAX:
                raise InvalidCommand(
                    f"a metadata key has 1 to {METADATA_KEY_CHARS_MAX} characters",
                    param="metadata",
                )
            if len(value) > METADATA_VALUE_CHARS_MAX:
                raise InvalidCommand(
                    f"a metadata value has at most {METADATA_VALUE_CHARS_MAX} characters",
                    param="metadata",
                )


@dataclass(frozen=True)
class OpenTrace(Command):
    contract: TraceContract


@dataclass(frozen=True)
class CloseTrace(Command):
    trace_id: str
    project_id: UUID
    mode: str
    key_id: UUID | None = None


@dataclass(frozen=True)
class ExpireTrace(Command):
    """Record an expiry the gateway (or a sweep) observed; nothing when not yet due."""

    trace_id: str
    project_id: UUID
    mode: str


@dataclass(frozen=True)
class SpanPlan:
    """A join that passed every contract check but the budget (the Account decides that)."""

    trace_id: str
    parent_span_id: str | None
    depth: int
    limit: str


def plan_span(
    trace: Any,
    parent: Any,
    join: TraceJoin,
    *,
    project_id: UUID | None,
    mode: str,
    model: str,
    now: datetime,
) -> SpanPlan:
    """Check a request's join against the contract, in the order a caller can fix them:
    the trace exists (in this project) → it is open → the model is allowed → the depth."""
    if not isinstance(trace, Trace) or trace.project_id != project_id or trace.mode != mode:
        raise TraceNotFound(f"no trace {join.trace_id} in this project", param="trace_id")
    trace.check_open(now)
    trace.check_model(model)
    depth = 1
    if join.parent_span_id is not None:
        span = getattr(parent, "trace_span", None) if isinstance(parent, Request) else None
        if span is None or span["trace_id"] != join.trace_id:
            raise TraceParentNotFound(
                f"the parent span {join.parent_span_id[:40]} is not a span of this trace",
                param="x-parent-span-id",
            )
        depth = int(span["depth"]) + 1
    if depth > trace.max_depth:
        raise TraceDepthExceeded(
            f"this span would be at depth {depth}; the trace allows {trace.max_depth}",
            depth=depth,
            max_depth=trace.max_depth,
        )
    return SpanPlan(join.trace_id, join.parent_span_id, depth, trace_limit_name(join.trace_id))


def record_span(request: Request, plan: SpanPlan, *, endpoint: str, now: datetime) -> None:
    request.trigger_event(
        SpanJoined,
        span_id=request.request_id,
        trace_id=plan.trace_id,
        parent_span_id=plan.parent_span_id,
        depth=plan.depth,
        endpoint=endpoint,
        started_at=request.received_at,
        joined_at=now,
    )


def trace_view(trace: Trace, now: datetime, limit: dict[str, Any] | None) -> dict[str, Any]:
    """The trace as `GET /v1/traces/{id}` shows it; `limit` is the Account's live figures
    of its budget while it has any (domain/limits.limit_status)."""
    reserved = spent = None
    if limit is not None:
        reserved, spent = limit["pending"], limit["posted"]
    return {
        "id": trace.trace_id,
        "object": "trace",
        "name": trace.name,
        "status": trace.status_at(now),
        "budget": format(trace.budget, "f"),
        "currency": trace.currency,
        "max_depth": trace.max_depth,
        "allowed_models": list(trace.allowed_models_requested),
        "resolved_models": list(trace.allowed_models),
        "metadata": {key: value for key, value in trace.metadata},
        "opened_at": _iso(trace.opened_at),
        "expires_at": _iso(trace.expires_at),
        "closed_at": _iso(trace.closed_at),
        "expired_at": _iso(trace.expired_at),
        "mode": trace.mode,
        "budget_reserved": None if reserved is None else format(reserved, "f"),
        "budget_spent": None if spent is None else format(spent, "f"),
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")
