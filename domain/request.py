"""The request lifecycle, one aggregate per request, each arrow an event:

    received → admitted | rejected → dispatched → streaming → completed | failed | abandoned

Events carry no prompt or completion text: sizes, counts and SHA-256 hashes only.

Each event is declared once, with its stored fields and its effect on the request (`apply`),
and fired with `trigger_event(EventClass, **fields)`: a command method checks, then triggers.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

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


ADMISSION_TERMS_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(AdmissionTerms))


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

        def apply(self, aggregate: Request) -> None:
            aggregate.pii_screened = True

    class Rejected(Aggregate.Event):
        http_status: int
        error_code: str
        error_type: str
        message: str
        rejected_at: datetime

        def apply(self, aggregate: Request) -> None:
            aggregate.status = REJECTED

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

        def apply(self, aggregate: Request) -> None:
            aggregate.status = ADMITTED
            aggregate.priced_model = self.model
            aggregate.model = self.model
            aggregate.provider = self.provider
            aggregate.upstream_model = self.upstream_model
            # The terms are fields of this event by the same names.
            aggregate.terms = AdmissionTerms(
                **{name: getattr(self, name) for name in ADMISSION_TERMS_FIELDS}
            )

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

        def apply(self, aggregate: Request) -> None:
            aggregate.route_recorded = True

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

        def apply(self, aggregate: Request) -> None:
            if aggregate.terms is not None:
                aggregate.terms = replace(
                    aggregate.terms,
                    price_id=self.price_id,
                    input_price_per_mtok=self.input_price_per_mtok,
                    output_price_per_mtok=self.output_price_per_mtok,
                    price_currency=self.price_currency,
                    fx_rate=self.fx_rate,
                    fx_rate_id=self.fx_rate_id,
                )
            aggregate.priced_model = self.model

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

        def apply(self, aggregate: Request) -> None:
            aggregate.ocr_cost = self.cost
            aggregate.ocr_currency = self.price_currency
            aggregate.ocr_fx_rate = self.fx_rate

    class Dispatched(Aggregate.Event):
        provider: str
        model: str
        upstream_model: str
        endpoint_name: str
        attempt: int
        dispatched_at: datetime

        def apply(self, aggregate: Request) -> None:
            aggregate.status = DISPATCHED
            aggregate.provider = self.provider
            aggregate.model = self.model
            aggregate.upstream_model = self.upstream_model

    class StreamingStarted(Aggregate.Event):
        first_chunk_ms: int
        started_at: datetime

        def apply(self, aggregate: Request) -> None:
            aggregate.status = STREAMING

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

        def apply(self, aggregate: Request) -> None:
            aggregate.status = COMPLETED

    class DeadlineExtended(Aggregate.Event):
        """The process serving this request is alive and still serving it: its lease (the
        deadline the sweeper honours) is renewed. Only requests that outlive half their
        deadline get one, so most requests never do."""

        deadline_at: datetime
        extended_at: datetime

        def apply(self, aggregate: Request) -> None:
            aggregate.deadline_at = self.deadline_at

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
        # No state change: the flag is a fact for the audit and reconciliation.

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

        def apply(self, aggregate: Request) -> None:
            aggregate.sweep_corrected = True
            aggregate.charged_amount = self.charged_amount

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

        def apply(self, aggregate: Request) -> None:
            aggregate.journalled = {name: getattr(self, name) for name in JOURNALLED_FIELDS}

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

        def apply(self, aggregate: Request) -> None:
            aggregate.status = FAILED

    class Abandoned(Aggregate.Event):
        reason: str
        state_before: str
        charged_amount: Decimal
        released_amount: Decimal
        abandoned_at: datetime

        def apply(self, aggregate: Request) -> None:
            aggregate.status = ABANDONED
            aggregate.charged_amount = self.charged_amount

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
        project_id: UUID | None,
        key_id: UUID | None,
        actor_id: str | None,
        stream: bool,
        received_at: datetime,
        deadline_at: datetime,
        mode: str = Mode.LIVE.value,
        conversation_id: str | None = None,
    ) -> None:
        # Received declares the stored fields; eventsourcing passes this method only those
        # it names: the ones the request keeps.
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
        self.sweep_corrected = False  # getattr below: older snapshots lack it

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATES

    def check_transition(self, target: str) -> None:
        if target not in ALLOWED_TRANSITIONS.get(self.status, frozenset()):
            raise self._refusal(target, f" cannot go from {self.status} to {target}")

    def _refusal(self, target: str, why: str) -> IllegalTransition:
        """What this request's state does not allow: the error names the request, its state
        and the refused target; `why` follows the request id in the message."""
        return IllegalTransition(
            f"request {self.request_id}{why}", state=self.status, target=target
        )

    def record_pii_decision(self, decision: PiiDecision, *, now: datetime) -> None:
        # Screening happens before admission or rejection: only a just-received request
        # gets its decision recorded, once.
        if self.status != RECEIVED or self.pii_screened:
            raise self._refusal("pii_screened", f" cannot record a PII decision in {self.status}")
        self.trigger_event(
            self.PiiScreened,
            policy_received=decision.policy_received,
            processed=decision.processed,
            action=decision.action,
            sensitivity=decision.sensitivity,
            language=decision.language,
            entity_counts=tuple((str(name), int(count)) for name, count in decision.entity_counts),
            entities_detected=decision.entities_detected,
            redactions_applied=decision.redactions_applied,
            latency_ms=float(decision.latency_ms),
            policy_source=decision.policy_source,
            blocked=decision.blocked,
            blocked_entity_types=tuple(decision.blocked_entity_types),
            failure_code=decision.failure_code,
            screened_at=now,
        )

    def reject(
        self, *, http_status: int, error_code: str, error_type: str, message: str, now: datetime
    ) -> None:
        self.check_transition(REJECTED)
        self.trigger_event(
            self.Rejected,
            http_status=http_status,
            error_code=error_code,
            error_type=error_type,
            message=message[:500],
            rejected_at=now,
        )

    def admit(self, **fields: Any) -> None:
        """`fields`: the stored fields of Admitted (the terms settlement prices by)."""
        self.check_transition(ADMITTED)
        self.trigger_event(self.Admitted, **fields)

    def record_route(self, **fields: Any) -> None:
        """The route decision (the stored fields of RouteDecided); recorded once, before
        admission."""
        if self.status != RECEIVED or self.route_recorded:
            raise self._refusal("route_decided", ": the route is decided once, before admission")
        self.trigger_event(self.RouteDecided, **fields)

    def reprice(self, **fields: Any) -> None:
        """`fields`: the stored fields of Repriced (the failover target's price and rate)."""
        self._check_priced_once_admitted("repriced", again=False)
        self.trigger_event(self.Repriced, **fields)

    def record_documents(self, **fields: Any) -> None:
        """`fields`: the stored fields of DocumentsProcessed (OCR pages and their price)."""
        self._check_priced_once_admitted("documents_processed", again=self.ocr_cost is not None)
        self.trigger_event(self.DocumentsProcessed, **fields)

    def _check_priced_once_admitted(self, target: str, *, again: bool) -> None:
        """Repricing and OCR pricing happen after admission and before the answer."""
        if self.status not in (ADMITTED, DISPATCHED) or self.terms is None or again:
            raise self._refusal(target, f" cannot record {target} in state {self.status}")

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
        self.trigger_event(
            self.Dispatched,
            provider=provider,
            model=model,
            upstream_model=upstream_model,
            endpoint_name=endpoint_name,
            attempt=attempt,
            dispatched_at=now,
        )

    def start_streaming(self, *, first_chunk_ms: int, now: datetime) -> None:
        self.check_transition(STREAMING)
        self.trigger_event(self.StreamingStarted, first_chunk_ms=first_chunk_ms, started_at=now)

    def complete(self, **fields: Any) -> None:
        """`fields`: the stored fields of Completed; `cache` defaults to "miss"."""
        self.check_transition(COMPLETED)
        fields.setdefault("cache", "miss")
        fields.setdefault("cache_origin_request_id", None)
        self.trigger_event(self.Completed, **fields)

    def extend_deadline(self, *, deadline_at: datetime, now: datetime) -> bool:
        """Renew the serving process's lease; False (nothing recorded) when the request has
        ended or the deadline would not move later."""
        if self.is_terminal or deadline_at <= self.deadline_at:
            return False
        self.trigger_event(self.DeadlineExtended, deadline_at=deadline_at, extended_at=now)
        return True

    def correct_after_sweep(self, **fields: Any) -> None:
        """`fields`: the stored fields of SweepCorrected."""
        if self.status != ABANDONED or getattr(self, "sweep_corrected", False):
            raise self._refusal("sweep_corrected", ": only a swept request is corrected, once")
        self.trigger_event(self.SweepCorrected, **fields)

    def flag_usage(self, **fields: Any) -> None:
        """`fields`: the stored fields of UsageFlagged."""
        self.trigger_event(self.UsageFlagged, **fields)

    def journal_usage(self, **fields: Any) -> None:
        """`fields`: the stored fields of UsageJournalled."""
        if self.status not in (DISPATCHED, STREAMING) or self.journalled is not None:
            raise self._refusal(
                "usage_journalled", ": usage is journalled once, while it is served"
            )
        self.trigger_event(self.UsageJournalled, **fields)

    def fail(self, **fields: Any) -> None:
        """`fields`: the stored fields of Failed."""
        self.check_transition(FAILED)
        self.trigger_event(self.Failed, **fields)

    def abandon(
        self, *, reason: str, charged_amount: Decimal, released_amount: Decimal, now: datetime
    ) -> None:
        self.check_transition(ABANDONED)
        self.trigger_event(
            self.Abandoned,
            reason=reason,
            state_before=self.status,
            charged_amount=charged_amount,
            released_amount=released_amount,
            abandoned_at=now,
        )


# The usage a UsageJournalled keeps on the request until it is charged (its stored fields
# but the instant): whoever settles the request charges exactly these.
JOURNALLED_FIELDS: tuple[str, ...] = tuple(
    field.name
    for field in fields(Request.UsageJournalled)
    if field.name not in {base.name for base in fields(Aggregate.Event)} | {"journalled_at"}
)
