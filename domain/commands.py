"""Commands: imperative, frozen, primitives only. Handlers live in domain/handlers.py."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

from domain.pii_events import PiiDecision
from domain.settlement import DEFAULT_FEE_RATE
from domain.vocabulary import KeySource, Mode, Plan, Tier


class Command:
    """Marker base class."""


class UnitOfWorkLike(Protocol):
    """What a handler outside domain/handlers.py writes through: the writer's unit of work
    (domain/handlers.UnitOfWork), which finds an aggregate by id, adds a new one to the
    save, and carries the clock the command is decided at."""

    clock: Any

    def find(self, aggregate_id: UUID) -> Any | None: ...

    def add(self, aggregate: Any) -> None: ...


@dataclass(frozen=True)
class CreateProject(Command):
    name: str
    tier: str = Tier.UNRESTRICTED.value
    plan: str = Plan.PRO.value
    currency: str = "USD"
    fee_rate: Decimal = DEFAULT_FEE_RATE
    strict: bool = False


@dataclass(frozen=True)
class CreateApiKey(Command):
    project_id: UUID
    daily_budget: Decimal | None = None
    test: bool = False


@dataclass(frozen=True)
class RevokeApiKey(Command):
    key_id: UUID
    reason: str = "revoked by admin"


@dataclass(frozen=True)
class TopUp(Command):
    project_id: UUID
    amount: Decimal
    currency: str
    reference: str
    test: bool = False  # the project's separate test balance (lg_test_ keys), opened on first use


@dataclass(frozen=True)
class AdjustBalance(Command):
    project_id: UUID
    amount: Decimal
    reason: str
    reference: str


@dataclass(frozen=True)
class SetPlan(Command):
    project_id: UUID
    plan: str


@dataclass(frozen=True)
class SetTier(Command):
    project_id: UUID
    tier: str


@dataclass(frozen=True)
class SetFeeRate(Command):
    """A negotiated platform fee; Enterprise projects only."""

    project_id: UUID
    fee_rate: Decimal


@dataclass(frozen=True)
class SetProviderKey(Command):
    """Encrypted by the gateway before it becomes a command: the key itself never does."""

    project_id: UUID
    provider: str
    ciphertext_b64: str
    nonce_b64: str
    key_fingerprint: str
    secret_fingerprint: str


@dataclass(frozen=True)
class RemoveProviderKey(Command):
    project_id: UUID
    provider: str


@dataclass(frozen=True)
class SetPrice(Command):
    model: str
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    currency: str
    effective_from: datetime
    cached_input_per_mtok: Decimal | None = None
    source: str = "operator"  # "operator" | "catalog" (domain/pricing.py: which one wins)
    project_id: UUID | None = None  # set: the price of that project's custom model


@dataclass(frozen=True)
class SetFxRate(Command):
    base: str
    quote: str
    rate: Decimal
    effective_from: datetime
    source: str = "admin"


@dataclass(frozen=True)
class ImportFxRates(Command):
    """Many rates at once (an ECB reference-rate file), in one transaction. Each row is
    (base, quote, rate, effective_from, source); a row already recorded adds nothing."""

    rows: tuple[tuple[str, str, Decimal, datetime, str], ...]


@dataclass(frozen=True)
class RequestFacts:
    """What is known of a request when it arrives (no prompt text: sizes and hashes)."""

    request_id: str
    endpoint: str
    project_id: UUID | None
    key_id: UUID | None
    actor_id: str | None
    model_requested: str | None
    stream: bool
    message_count: int
    prompt_chars: int
    prompt_sha256: str | None
    trace_id: str | None
    idempotency_key_sha256: str | None
    client_ip: str | None
    received_at: datetime
    deadline_at: datetime
    mode: str = Mode.LIVE.value  # "test" for an lg_test_ key (domain/ids.key_mode)
    conversation_id: str | None = None  # X-Conversation-Id / body conversation_id


@dataclass(frozen=True)
class RecordRejection(Command):
    facts: RequestFacts
    http_status: int
    error_code: str
    error_type: str
    message: str
    pii_decision: PiiDecision | None = None  # recorded before the rejection when screening ran
    credential_id: str | None = None  # the temporary credential presented (its jti)


@dataclass(frozen=True)
class Route:
    model: str
    provider: str
    upstream_model: str
    endpoint_name: str = "default"
    # The project owning the routed model when it is a custom model: it is priced from that
    # project's own price book, never from a shared one (domain/pricing.py).
    price_project_id: UUID | None = None


@dataclass(frozen=True)
class TraceJoin:
    """A request's place in a governed trace, as the client asked (body `trace_id` or
    `X-Trace-Id`, `X-Parent-Span-Id`): checked against the contract at admission
    (domain/trace.py)."""

    trace_id: str
    parent_span_id: str | None = None


@dataclass(frozen=True)
class AdmitRequest(Command):
    """Receive, reserve and dispatch in one transaction, so all three are durable before
    any provider is called. If the reservation is refused, the request is recorded as
    rejected instead (and that is durable too)."""

    facts: RequestFacts
    route: Route
    estimated_input_tokens: int
    max_output_tokens: int
    # None: derived from the project's plan and the key source (settlement.fee_rate_for).
    fee_rate: Decimal | None = None
    key_source: str = KeySource.MANAGED.value
    daily_budget: Decimal | None = None
    price_at: datetime | None = None  # defaults to facts.received_at
    # RouteDecision.as_event_fields() from gateway/routing: recorded as Request.RouteDecided.
    route_decision: Mapping[str, Any] | None = None
    # OCR to come (eu_strict PDFs): {"cost": Decimal, "currency": str}, added to the reservation.
    ocr_estimate: Mapping[str, Any] | None = None

    pii_decision: PiiDecision | None = None  # recorded between received and admitted
    trace: TraceJoin | None = None  # a governed trace this request joins as a span
    # A temporary credential (its jti, domain/credentials.py): its rules are decided here
    # on its aggregate, and the reservation holds against its limit on the Account.
    credential_id: str | None = None


@dataclass(frozen=True)
class RecordDocuments(Command):
    """OCR done: the pages processed and the per-page price used (gateway/routing/documents)."""

    request_id: str
    documents: int
    pages: int
    ocr_model: str
    per_page: Decimal
    currency: str
    price_effective_from: datetime


@dataclass(frozen=True)
class Redispatch(Command):
    request_id: str
    route: Route
    attempt: int


@dataclass(frozen=True)
class MarkStreaming(Command):
    request_id: str
    first_chunk_ms: int
    started_at: datetime | None = None  # when the first chunk arrived (default: when decided)


@dataclass(frozen=True)
class FirstChunk:
    """A stream's first chunk, not yet recorded when its settlement is made: recorded
    (Request.StreamingStarted, with its real time) by the settlement's own command, so a
    short stream costs one command and one commit fewer (gateway/lifecycle/stream.py)."""

    first_chunk_ms: int
    at: datetime


@dataclass(frozen=True)
class UsageReport:
    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    usage_source: str = "provider"


@dataclass(frozen=True)
class CompleteRequest(Command):
    request_id: str
    usage: UsageReport
    finish_reason: str | None
    completion_chars: int
    completion_sha256: str | None
    latency_ms: int
    upstream_ms: int
    actor_id: str | None = None
    # Served from the response cache: "hit" with the request the entry was stored by (usage
    # is then zero: no provider was called). "miss" or "bypass" otherwise.
    cache: str = "miss"
    cache_origin_request_id: str | None = None
    first_chunk: FirstChunk | None = None  # a stream's first chunk, recorded first


@dataclass(frozen=True)
class FailRequest(Command):
    request_id: str
    http_status: int
    error_code: str
    error_type: str
    message: str
    latency_ms: int
    after_first_chunk: bool = False
    delivered_chunks: int = 0
    usage: UsageReport | None = None  # tokens actually used, charged if any
    actor_id: str | None = None
    first_chunk: FirstChunk | None = None  # a stream's first chunk, recorded first


@dataclass(frozen=True)
class AbandonRequest(Command):
    request_id: str
    reason: str = "swept: no terminal state before the deadline"
    # The sweeper's cutoff: a request whose deadline (its serving process's lease, renewed
    # by ExtendDeadline) is later than this is still live and is left alone.
    overdue_before: datetime | None = None


@dataclass(frozen=True)
class ExtendDeadline(Command):
    """The serving process renews its lease on a request it is still serving."""

    request_id: str
    deadline_at: datetime


@dataclass(frozen=True)
class JournalUsage(Command):
    """The upstream answered but the charge could not be made durable: keep the real usage
    on the request (no Account event), so its settlement, whoever makes it, charges it."""

    request_id: str
    usage: UsageReport
    finish_reason: str | None
    completion_chars: int
    completion_sha256: str | None
    latency_ms: int
    upstream_ms: int


@dataclass(frozen=True)
class Outcome:
    value: object
    position: int | None = field(default=None)


@dataclass(frozen=True)
class RecordReconciliation(Command):
    """Record a provider reconciliation (reconciliation/recording.py builds it from a
    report); with `adjust_project_id`, also adjust that project's balance by the total
    difference (ledger - invoice), in the same transaction."""

    provider: str
    month: str
    currency: str
    per_day: bool
    tolerance: Decimal
    relative_tolerance: Decimal
    ledger_cost: Decimal
    invoice_cost: Decimal
    difference: Decimal
    status: str
    lines_by_status: tuple[tuple[str, int], ...]
    lines: tuple[tuple[str, str, str, str, str, str], ...]
    ledger_charges: int
    ledger_position: int | None
    invoice_sha256: str
    invoice_source: str
    invoice_layout: str
    adjust_project_id: UUID | None = None
