"""The request lifecycle, one aggregate per request, each arrow an event:

    received → admitted | rejected → dispatched → streaming → completed | failed | abandoned

Events carry no prompt or completion text: sizes, counts and SHA-256 hashes only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import IllegalTransition, InvalidCommand
from domain.pii_events import PiiDecision
from domain.vocabulary import MODES, Mode, RequestStatus
from domain.vocabulary import NON_TERMINAL_STATES as NON_TERMINAL_STATES  # re-exported
from domain.vocabulary import TERMINAL_STATES as TERMINAL_STATES  # re-exported

# The statuses are spelled once in domain/vocabulary.py; plain strings here because events
# store them and transitions compare them.
RECEIVED = RequestStatus.RECEIVED.value
ADMITTED = RequestStatus.ADMITTED.value
REJECTED = RequestStatus.REJECTED.value
DISPATCHED = RequestStatus.DISPATCHED.value
STREAMING = RequestStatus.STREAMING.value
COMPLETED = RequestStatus.COMPLETED.value
FAILED = RequestStatus.FAILED.value
ABANDONED = RequestStatus.ABANDONED.value

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
        mode: str  # v2: "live", or "test" for an lg_test_ key (simulated, test balance)
        conversation_id: str | None  # v3: the thread a request belongs to (X-Conversation-Id)

        class_version = 3

        @staticmethod
        def upcast_v1_v2(state: dict[str, object]) -> None:
            state["mode"] = "live"  # test mode did not exist before v2

        @staticmethod
        def upcast_v2_v3(state: dict[str, object]) -> None:
            state["conversation_id"] = None  # conversations were not recorded before v3

    class PiiScreened(Aggregate.Event):
        """The PII decision for this request: what policy applied and what screening did.
        Counts and entity types only, never a value (domain/pii_events.py)."""

        policy_received: bool
        processed: bool
        action: str
        sensitivity: str
        language: str
        entity_counts: tuple[tuple[str, int], ...]
        entities_detected: int
        redactions_applied: int
        latency_ms: float
        policy_source: str
        blocked: bool
        blocked_entity_types: tuple[str, ...]
        failure_code: str
        screened_at: datetime

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

    class RouteDecided(Aggregate.Event):
        """Why this model and endpoint: the router's candidates and their sampled scores.
        Recorded with admission, before any provider is called (gateway/routing)."""

        requested_model: str
        mode: str
        variant: str
        tier: str
        model: str
        provider: str
        upstream_model: str
        endpoint: str
        failover: tuple[str, ...]
        reason: str
        confidence: str
        candidates: tuple[tuple[str, str, str], ...]
        decided_at: datetime

    class Repriced(Aggregate.Event):
        """Failover moved the request to another model: later charges use that model's
        price in effect at reception (the reservation stays as it was)."""

        model: str
        price_id: str
        price_effective_from: datetime
        input_price_per_mtok: Decimal
        output_price_per_mtok: Decimal
        price_currency: str
        fx_rate: Decimal
        fx_rate_id: str | None
        repriced_at: datetime

    class DocumentsProcessed(Aggregate.Event):
        """PDFs turned into markdown by OCR before the model saw them (eu_strict: Mistral
        OCR). Its cost, at the per-page price in effect, is part of the request's charge."""

        documents: int
        pages: int
        ocr_model: str
        per_page: Decimal
        price_currency: str
        price_effective_from: datetime
        cost: Decimal
        fx_rate: Decimal
        fx_rate_id: str | None
        processed_at: datetime

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
        # v2: "hit" when the answer came from the response cache (gateway/response_cache.py;
        # no provider was called, usage and provider cost are zero), "miss" when looked up
        # and not found, "bypass" when the cache was not used; the hit's origin request.
        cache: str
        cache_origin_request_id: str | None

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, object]) -> None:
            state["cache"] = "miss"  # before v2 there was no cache: every request missed
            state["cache_origin_request_id"] = None

    class DeadlineExtended(Aggregate.Event):
        """The process serving this request is alive and still serving it: its lease (the
        deadline the sweeper honours) is renewed. Only requests that outlive half their
        deadline get one, so most requests never do."""

        deadline_at: datetime
        extended_at: datetime

    class UsageFlagged(Aggregate.Event):
        """The upstream reported usage this request could not have produced (negative, not
        an integer, beyond n × max output or the input bound): an upstream error. The counts
        charged are capped (domain/usage.py) and the charge is flagged for reconciliation."""

        problems: tuple[str, ...]
        reported_input_tokens: str
        reported_output_tokens: str
        reported_cached_tokens: str
        charged_input_tokens: int
        charged_output_tokens: int
        input_tokens_bound: int
        output_tokens_max: int
        flagged_at: datetime

    class SweepCorrected(Aggregate.Event):
        """Swept while its process was still serving it (a stall past its lease), then
        answered: no new state (abandoned stays terminal), but the charge is corrected to the
        real usage (Account.ChargeCorrected) and the answer still reaches the client."""

        input_tokens: int
        output_tokens: int
        cached_tokens: int
        usage_source: str
        finish_reason: str | None
        provider_cost: Decimal
        charged_amount: Decimal  # the request's whole charge after the correction
        fee_amount: Decimal
        shortfall_amount: Decimal
        completion_chars: int
        completion_sha256: str | None
        latency_ms: int
        upstream_ms: int
        corrected_at: datetime

    class UsageJournalled(Aggregate.Event):
        """The upstream answered but the charge could not be made durable yet (the account
        kept conflicting, or the store failed): the real usage is kept on the request, so
        whoever settles it — the serving process retrying, or the sweeper — charges it,
        never an estimate."""

        input_tokens: int
        output_tokens: int
        cached_tokens: int
        usage_source: str
        finish_reason: str | None
        completion_chars: int
        completion_sha256: str | None
        latency_ms: int
        upstream_ms: int
        journalled_at: datetime

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
    def receive(
        cls,
        *,
        aggregate_id: UUID,
        mode: str = Mode.LIVE.value,
        conversation_id: str | None = None,
        **fields: Any,
    ) -> Request:
        if mode not in MODES:
            raise InvalidCommand("a request's mode is live or test")
        return cls._create(
            cls.Received, id=aggregate_id, mode=mode, conversation_id=conversation_id, **fields
        )

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
        mode: str = Mode.LIVE.value,
        conversation_id: str | None = None,
    ) -> None:
        self.request_id = request_id
        self.mode = mode
        self.conversation_id = conversation_id
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
        self.route_recorded = False
        self.priced_model: str | None = None
        self.ocr_cost: Decimal | None = None
        self.ocr_currency: str | None = None
        self.ocr_fx_rate: Decimal | None = None
        self.pii_screened = False
        self.charged_amount: Decimal = Decimal(0)  # what a sweep charged, for a correction
        self.journalled: dict[str, Any] | None = None  # real usage awaiting its charge

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

    def record_pii_decision(self, decision: PiiDecision, *, now: datetime) -> None:
        # Screening happens before admission or rejection: only a just-received request
        # gets its decision recorded, once.
        if self.status != RECEIVED or self.pii_screened:
            raise IllegalTransition(
                f"request {self.request_id} cannot record a PII decision in {self.status}",
                state=self.status,
                target="pii_screened",
            )
        self._pii_screened(
            decision.policy_received,
            decision.processed,
            decision.action,
            decision.sensitivity,
            decision.language,
            tuple((str(name), int(count)) for name, count in decision.entity_counts),
            decision.entities_detected,
            decision.redactions_applied,
            float(decision.latency_ms),
            decision.policy_source,
            decision.blocked,
            tuple(decision.blocked_entity_types),
            decision.failure_code,
            now,
        )

    @event(PiiScreened)
    def _pii_screened(
        self,
        policy_received: bool,
        processed: bool,
        action: str,
        sensitivity: str,
        language: str,
        entity_counts: tuple[tuple[str, int], ...],
        entities_detected: int,
        redactions_applied: int,
        latency_ms: float,
        policy_source: str,
        blocked: bool,
        blocked_entity_types: tuple[str, ...],
        failure_code: str,
        screened_at: datetime,
    ) -> None:
        self.pii_screened = True

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

    def admit(self, **fields: Any) -> None:
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
        self.priced_model = model
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

    def record_route(self, **fields: Any) -> None:
        """The route decision; recorded once, before admission."""
        if self.status != RECEIVED or self.route_recorded:
            raise IllegalTransition(
                f"request {self.request_id}: the route is decided once, before admission",
                state=self.status,
                target="route_decided",
            )
        self._route_decided(**fields)

    @event(RouteDecided)
    def _route_decided(
        self,
        requested_model: str,
        mode: str,
        variant: str,
        tier: str,
        model: str,
        provider: str,
        upstream_model: str,
        endpoint: str,
        failover: tuple[str, ...],
        reason: str,
        confidence: str,
        candidates: tuple[tuple[str, str, str], ...],
        decided_at: datetime,
    ) -> None:
        self.route_recorded = True

    def reprice(self, **fields: Any) -> None:
        if self.status not in (ADMITTED, DISPATCHED) or self.terms is None:
            raise IllegalTransition(
                f"request {self.request_id} cannot be repriced in state {self.status}",
                state=self.status,
                target="repriced",
            )
        self._repriced(**fields)

    @event(Repriced)
    def _repriced(
        self,
        model: str,
        price_id: str,
        price_effective_from: datetime,
        input_price_per_mtok: Decimal,
        output_price_per_mtok: Decimal,
        price_currency: str,
        fx_rate: Decimal,
        fx_rate_id: str | None,
        repriced_at: datetime,
    ) -> None:
        if self.terms is not None:
            self.terms = replace(
                self.terms,
                price_id=price_id,
                input_price_per_mtok=input_price_per_mtok,
                output_price_per_mtok=output_price_per_mtok,
                price_currency=price_currency,
                fx_rate=fx_rate,
                fx_rate_id=fx_rate_id,
            )
        self.priced_model = model

    def record_documents(self, **fields: Any) -> None:
        if self.status not in (ADMITTED, DISPATCHED) or self.ocr_cost is not None:
            raise IllegalTransition(
                f"request {self.request_id}: documents are processed once, after admission",
                state=self.status,
                target="documents_processed",
            )
        self._documents_processed(**fields)

    @event(DocumentsProcessed)
    def _documents_processed(
        self,
        documents: int,
        pages: int,
        ocr_model: str,
        per_page: Decimal,
        price_currency: str,
        price_effective_from: datetime,
        cost: Decimal,
        fx_rate: Decimal,
        fx_rate_id: str | None,
        processed_at: datetime,
    ) -> None:
        self.ocr_cost = cost
        self.ocr_currency = price_currency
        self.ocr_fx_rate = fx_rate

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

    def complete(self, **fields: Any) -> None:
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
        cache: str = "miss",
        cache_origin_request_id: str | None = None,
    ) -> None:
        self.status = COMPLETED

    def extend_deadline(self, *, deadline_at: datetime, now: datetime) -> bool:
        """Renew the serving process's lease; False (nothing recorded) when the request has
        ended or the deadline would not move later."""
        if self.is_terminal or deadline_at <= self.deadline_at:
            return False
        self._deadline_extended(deadline_at, now)
        return True

    @event(DeadlineExtended)
    def _deadline_extended(self, deadline_at: datetime, extended_at: datetime) -> None:
        self.deadline_at = deadline_at

    def correct_after_sweep(self, **fields: Any) -> None:
        if self.status != ABANDONED or getattr(self, "sweep_corrected", False):
            raise IllegalTransition(
                f"request {self.request_id}: only a swept request is corrected, once",
                state=self.status,
                target="sweep_corrected",
            )
        self._sweep_corrected(**fields)

    @event(SweepCorrected)
    def _sweep_corrected(
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
        corrected_at: datetime,
    ) -> None:
        self.sweep_corrected = True
        self.charged_amount = charged_amount

    def flag_usage(self, **fields: Any) -> None:
        self._usage_flagged(**fields)

    @event(UsageFlagged)
    def _usage_flagged(
        self,
        problems: tuple[str, ...],
        reported_input_tokens: str,
        reported_output_tokens: str,
        reported_cached_tokens: str,
        charged_input_tokens: int,
        charged_output_tokens: int,
        input_tokens_bound: int,
        output_tokens_max: int,
        flagged_at: datetime,
    ) -> None:
        pass

    def journal_usage(self, **fields: Any) -> None:
        if self.status not in (DISPATCHED, STREAMING) or self.journalled is not None:
            raise IllegalTransition(
                f"request {self.request_id}: usage is journalled once, while it is served",
                state=self.status,
                target="usage_journalled",
            )
        self._usage_journalled(**fields)

    @event(UsageJournalled)
    def _usage_journalled(
        self,
        input_tokens: int,
        output_tokens: int,
        cached_tokens: int,
        usage_source: str,
        finish_reason: str | None,
        completion_chars: int,
        completion_sha256: str | None,
        latency_ms: int,
        upstream_ms: int,
        journalled_at: datetime,
    ) -> None:
        self.journalled = {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cached_tokens": cached_tokens,
            "usage_source": usage_source,
            "finish_reason": finish_reason,
            "completion_chars": completion_chars,
            "completion_sha256": completion_sha256,
            "latency_ms": latency_ms,
            "upstream_ms": upstream_ms,
        }

    def fail(self, **fields: Any) -> None:
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
        self.charged_amount = charged_amount
