"""The request lifecycle, one aggregate per request, each arrow an event:

    received → admitted | rejected → dispatched → streaming → completed | failed | abandoned

Events carry no prompt or completion text: sizes, counts and SHA-256 hashes only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import IllegalTransition

RECEIVED = "received"
ADMITTED = "admitted"
REJECTED = "rejected"
DISPATCHED = "dispatched"
STREAMING = "streaming"
COMPLETED = "completed"
FAILED = "failed"
ABANDONED = "abandoned"

TERMINAL_STATES = frozenset({REJECTED, COMPLETED, FAILED, ABANDONED})
NON_TERMINAL_STATES = frozenset({RECEIVED, ADMITTED, DISPATCHED, STREAMING})

ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    RECEIVED: frozenset({ADMITTED, REJECTED}),
    ADMITTED: frozenset({DISPATCHED, FAILED, ABANDONED}),
    # dispatched → dispatched is a failover to another model or endpoint.
    DISPATCHED: frozenset({DISPATCHED, STREAMING, COMPLETED, FAILED, ABANDONED}),
    STREAMING: frozenset({COMPLETED, FAILED, ABANDONED}),
}


@dataclass(frozen=True, slots=True)
class AdmissionTerms:
    """What was agreed at admission; settlement (charge, sweep) prices by these terms."""

    currency: str
    reserved_amount: Decimal
    estimated_input_tokens: int
    max_output_tokens: int
    price_id: str
    input_price_per_mtok: Decimal
    output_price_per_mtok: Decimal
    price_currency: str
    fx_rate: Decimal
    fx_rate_id: str | None
    fee_rate: Decimal
    key_source: str


class Request(Aggregate):
    class Received(Aggregate.Created):
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

    class Rejected(Aggregate.Event):
        http_status: int
        error_code: str
        error_type: str
        message: str
        rejected_at: datetime

    class Admitted(Aggregate.Event):
        model: str
        provider: str
        upstream_model: str
        currency: str
        reserved_amount: Decimal
        estimated_input_tokens: int
        max_output_tokens: int
        price_id: str
        price_effective_from: datetime
        input_price_per_mtok: Decimal
        output_price_per_mtok: Decimal
        price_currency: str
        fx_rate: Decimal
        fx_rate_id: str | None
        fee_rate: Decimal
        key_source: str
        admitted_at: datetime

    class Dispatched(Aggregate.Event):
        provider: str
        model: str
        upstream_model: str
        endpoint_name: str
        attempt: int
        dispatched_at: datetime

    class StreamingStarted(Aggregate.Event):
        first_chunk_ms: int
        started_at: datetime

    class Completed(Aggregate.Event):
        input_tokens: int
        output_tokens: int
        cached_tokens: int
        usage_source: str
        finish_reason: str | None
        provider_cost: Decimal
        charged_amount: Decimal
        fee_amount: Decimal
        shortfall_amount: Decimal
        completion_chars: int
        completion_sha256: str | None
        latency_ms: int
        upstream_ms: int
        completed_at: datetime

    class Failed(Aggregate.Event):
        http_status: int
        error_code: str
        error_type: str
        message: str
        after_first_chunk: bool
        delivered_chunks: int
        input_tokens: int
        output_tokens: int
        usage_source: str
        provider_cost: Decimal
        charged_amount: Decimal
        fee_amount: Decimal
        latency_ms: int
        failed_at: datetime

    class Abandoned(Aggregate.Event):
        reason: str
        state_before: str
        charged_amount: Decimal
        released_amount: Decimal
        abandoned_at: datetime

    @classmethod
    def receive(cls, *, aggregate_id: UUID, **fields: object) -> Request:
        return cls._create(cls.Received, id=aggregate_id, **fields)

    def __init__(
        self,
        request_id: str,
        endpoint: str,
        project_id: UUID | None,
        key_id: UUID | None,
        actor_id: str | None,
        model_requested: str | None,
        stream: bool,
        message_count: int,
        prompt_chars: int,
        prompt_sha256: str | None,
        trace_id: str | None,
        idempotency_key_sha256: str | None,
        client_ip: str | None,
        received_at: datetime,
        deadline_at: datetime,
    ) -> None:
        self.request_id = request_id
        self.project_id = project_id
        self.key_id = key_id
        self.actor_id = actor_id
        self.stream = stream
        self.status = RECEIVED
        self.received_at = received_at
        self.deadline_at = deadline_at
        self.terms: AdmissionTerms | None = None
        self.provider: str | None = None
        self.model: str | None = None
        self.upstream_model: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATES

    def check_transition(self, target: str) -> None:
        if target not in ALLOWED_TRANSITIONS.get(self.status, frozenset()):
            raise IllegalTransition(
                f"request {self.request_id} cannot go from {self.status} to {target}",
                state=self.status,
                target=target,
            )

    def reject(
        self, *, http_status: int, error_code: str, error_type: str, message: str, now: datetime
    ) -> None:
        self.check_transition(REJECTED)
        self._rejected(http_status, error_code, error_type, message[:500], now)

    @event(Rejected)
    def _rejected(
        self,
        http_status: int,
        error_code: str,
        error_type: str,
        message: str,
        rejected_at: datetime,
    ) -> None:
        self.status = REJECTED

    def admit(self, **fields: object) -> None:
        self.check_transition(ADMITTED)
        self._admitted(**fields)

    @event(Admitted)
    def _admitted(
        self,
        model: str,
        provider: str,
        upstream_model: str,
        currency: str,
        reserved_amount: Decimal,
        estimated_input_tokens: int,
        max_output_tokens: int,
        price_id: str,
        price_effective_from: datetime,
        input_price_per_mtok: Decimal,
        output_price_per_mtok: Decimal,
        price_currency: str,
        fx_rate: Decimal,
        fx_rate_id: str | None,
        fee_rate: Decimal,
        key_source: str,
        admitted_at: datetime,
    ) -> None:
        self.status = ADMITTED
        self.model = model
        self.provider = provider
        self.upstream_model = upstream_model
        self.terms = AdmissionTerms(
            currency=currency,
            reserved_amount=reserved_amount,
            estimated_input_tokens=estimated_input_tokens,
            max_output_tokens=max_output_tokens,
            price_id=price_id,
            input_price_per_mtok=input_price_per_mtok,
            output_price_per_mtok=output_price_per_mtok,
            price_currency=price_currency,
            fx_rate=fx_rate,
            fx_rate_id=fx_rate_id,
            fee_rate=fee_rate,
            key_source=key_source,
        )

    def dispatch(
        self,
        *,
        provider: str,
        model: str,
        upstream_model: str,
        endpoint_name: str,
        attempt: int,
        now: datetime,
    ) -> None:
        self.check_transition(DISPATCHED)
        self._dispatched(provider, model, upstream_model, endpoint_name, attempt, now)

    @event(Dispatched)
    def _dispatched(
        self,
        provider: str,
        model: str,
        upstream_model: str,
        endpoint_name: str,
        attempt: int,
        dispatched_at: datetime,
    ) -> None:
        self.status = DISPATCHED
        self.provider = provider
        self.model = model
        self.upstream_model = upstream_model

    def start_streaming(self, *, first_chunk_ms: int, now: datetime) -> None:
        self.check_transition(STREAMING)
        self._streaming_started(first_chunk_ms, now)

    @event(StreamingStarted)
    def _streaming_started(self, first_chunk_ms: int, started_at: datetime) -> None:
        self.status = STREAMING

    def complete(self, **fields: object) -> None:
        self.check_transition(COMPLETED)
        self._completed(**fields)

    @event(Completed)
    def _completed(
        self,
        input_tokens: int,
        output_tokens: int,
        cached_tokens: int,
        usage_source: str,
        finish_reason: str | None,
        provider_cost: Decimal,
        charged_amount: Decimal,
        fee_amount: Decimal,
        shortfall_amount: Decimal,
        completion_chars: int,
        completion_sha256: str | None,
        latency_ms: int,
        upstream_ms: int,
        completed_at: datetime,
    ) -> None:
        self.status = COMPLETED

    def fail(self, **fields: object) -> None:
        self.check_transition(FAILED)
        self._failed(**fields)

    @event(Failed)
    def _failed(
        self,
        http_status: int,
        error_code: str,
        error_type: str,
        message: str,
        after_first_chunk: bool,
        delivered_chunks: int,
        input_tokens: int,
        output_tokens: int,
        usage_source: str,
        provider_cost: Decimal,
        charged_amount: Decimal,
        fee_amount: Decimal,
        latency_ms: int,
        failed_at: datetime,
    ) -> None:
        self.status = FAILED

    def abandon(
        self, *, reason: str, charged_amount: Decimal, released_amount: Decimal, now: datetime
    ) -> None:
        self.check_transition(ABANDONED)
        self._abandoned(reason, self.status, charged_amount, released_amount, now)

    @event(Abandoned)
    def _abandoned(
        self,
        reason: str,
        state_before: str,
        charged_amount: Decimal,
        released_amount: Decimal,
        abandoned_at: datetime,
    ) -> None:
        self.status = ABANDONED
