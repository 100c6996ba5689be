"""The audit log: one row per request, built from the Request aggregate's events.

The row keeps the request's latest state and the path that led there: the route decision
(`RouteDecided`), every dispatch attempt (`Dispatched`, in order; how each ended is read off
the next attempt or the terminal event), the price and FX rate actually charged (`Admitted`,
replaced by a failover's `Repriced`, the admission's kept beside it), the OCR of documents
(`DocumentsProcessed`), each with the id of the event that set it (`event_id`:
"<aggregate id>:<version>"). Structured parts are JSON text, rendered once here with the
read side's decimal scales (projections/db.py), so every backend reads the same record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from domain.credentials import CredentialUsed
from domain.ids import event_id
from domain.request import Request
from projections.base import View, reads
from projections.db import Tx, fx_rate_text, iso, money_text, price_text, time_text


def _event_id(event: Any) -> str:
    return event_id(event.originator_id, event.originator_version)


def candidate_records(candidates: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """A route decision's candidates as reads show them: each recorded as (model, sampled
    score, detail) by gateway/routing/decision.py."""
    return [
        {"model": model, "score": score, "detail": detail} for model, score, detail in candidates
    ]


def _price_columns(event: Any) -> dict[str, Any]:
    """The audit row's price and FX rate columns, as an Admitted or Repriced event sets them."""
    return {
        "price_id": event.price_id,
        "price_effective_from": iso(event.price_effective_from),
        "input_price_per_mtok": event.input_price_per_mtok,
        "output_price_per_mtok": event.output_price_per_mtok,
        "price_currency": event.price_currency,
        "fx_rate": event.fx_rate,
        "fx_rate_id": event.fx_rate_id,
    }


def _pricing_json(event: Any) -> str:
    """The price and FX rate an Admitted or Repriced event set, with that event's id."""
    return json.dumps(
        {
            "event_id": _event_id(event),
            "model": event.model,
            "price_id": event.price_id,
            "effective_from": time_text(event.price_effective_from),
            "input_per_mtok": price_text(event.input_price_per_mtok),
            "output_per_mtok": price_text(event.output_price_per_mtok),
            "price_currency": event.price_currency,
            "fx_rate": fx_rate_text(event.fx_rate),
            "fx_rate_id": event.fx_rate_id,
        },
        sort_keys=True,
    )


class AuditView(View):
    name = "audit"
    tables = ("lg_audit",)

    # A request's events mostly arrive in one or two batches: the view keeps, per request, the
    # row a Received event creates and the columns its later events set (merged, later
    # events winning, as the UPDATEs one by one would leave them), and writes each request
    # once per batch in `flush`: an INSERT that also carries the later columns, or one
    # UPDATE. It ran an INSERT and five UPDATEs per request (lg_audit has many indexes: the
    # UPDATEs were the costliest statements the projection worker ran).

    def __init__(self) -> None:
        self._created: dict[str, dict[str, Any]] = {}  # aggregate id -> the Received row
        self._changed: dict[str, dict[str, Any]] = {}  # aggregate id -> columns set since

    def reset(self, tx: Tx) -> None:
        super().reset(tx)
        self.discard()

    def discard(self) -> None:
        self._created = {}
        self._changed = {}

    def flush(self, tx: Tx) -> None:
        created, changed = self._created, self._changed
        self.discard()
        # Rows grouped by their columns: (all columns, the later ones) for the inserts.
        inserts: dict[tuple[tuple[str, ...], tuple[str, ...]], list[tuple[Any, ...]]] = {}
        updates: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for aggregate_id, row in created.items():
            later = changed.pop(aggregate_id, {})
            merged = {**row, **later}
            inserts.setdefault((tuple(merged), tuple(later)), []).append(tuple(merged.values()))
        for aggregate_id, columns in changed.items():
            updates.setdefault(tuple(columns), []).append((*columns.values(), aggregate_id))
        for (names, later_names), rows in inserts.items():
            # The row may exist already (the same request applied again): then, as before,
            # the Received columns stay and the later ones are set.
            conflict = (
                "DO UPDATE SET " + ", ".join(f"{name} = excluded.{name}" for name in later_names)
                if later_names
                else "DO NOTHING"
            )
            tx.cursor.executemany(
                tx.store.sql(
                    f"INSERT INTO lg_audit ({', '.join(names)}) "  # noqa: S608
                    f"VALUES ({', '.join('%s' for _ in names)}) "
                    f"ON CONFLICT (request_id) {conflict}"
                ),
                rows,
            )
        for names, rows in updates.items():
            assignments = ", ".join(f"{name} = %s" for name in names)
            tx.cursor.executemany(
                tx.store.sql(f"UPDATE lg_audit SET {assignments} WHERE aggregate_id = %s"),  # noqa: S608
                rows,
            )

    @reads(Request.Received)
    def _received(self, tx: Tx, event: Any, position: int) -> None:
        self._created.setdefault(
            str(event.originator_id),
            {
                "request_id": event.request_id,
                "aggregate_id": str(event.originator_id),
                "project_id": _str(event.project_id),
                "key_id": _str(event.key_id),
                "actor_id": event.actor_id,
                "endpoint": event.endpoint,
                "model_requested": event.model_requested,
                "stream": bool(event.stream),
                "status": "received",
                "message_count": event.message_count,
                "prompt_chars": event.prompt_chars,
                "prompt_sha256": event.prompt_sha256,
                "trace_id": event.trace_id,
                "received_at": iso(event.received_at),
                "deadline_at": iso(event.deadline_at),
                "attempts": 0,
                "position": position,
                "mode": event.mode,
                "conversation_id": event.conversation_id,
            },
        )

    # Later events are matched by aggregate id (the Received row carries it).

    @reads(Request.PiiScreened)
    def _pii_screened(self, tx: Tx, event: Any, position: int) -> None:
        # Integers, not booleans: the same SQL runs on SQLite and PostgreSQL INTEGER columns.
        self._update(
            tx,
            event,
            position,
            pii_policy_received=int(bool(event.policy_received)),
            pii_processed=int(bool(event.processed)),
            pii_action=event.action,
            pii_sensitivity=event.sensitivity,
            pii_language=event.language or None,
            pii_entity_counts=json.dumps(
                {str(name): int(count) for name, count in event.entity_counts}, sort_keys=True
            ),
            pii_entities_detected=event.entities_detected,
            pii_redactions_applied=event.redactions_applied,
            pii_latency_ms=f"{float(event.latency_ms):.3f}",
            pii_blocked=int(bool(event.blocked)),
            pii_failure_code=event.failure_code or None,
        )

    @reads(CredentialUsed)
    def _credential_used(self, tx: Tx, event: Any, position: int) -> None:
        # The temporary credential the request was made with (its jti, never the token).
        self._update(tx, event, position, credential_id=event.credential_id)

    @reads(Request.Rejected)
    def _rejected(self, tx: Tx, event: Any, position: int) -> None:
        self._update(
            tx,
            event,
            position,
            status="rejected",
            **_error_columns(event),
            finished_at=iso(event.rejected_at),
        )

    @reads(Request.RouteDecided)
    def _route_decided(self, tx: Tx, event: Any, position: int) -> None:
        decision = {
            "event_id": _event_id(event),
            "decided_at": time_text(event.decided_at),
            "requested_model": event.requested_model,
            "mode": event.mode,
            "variant": event.variant,
            "tier": event.tier,
            "model": event.model,
            "provider": event.provider,
            "upstream_model": event.upstream_model,
            "endpoint": event.endpoint,
            "failover": list(event.failover),
            "reason": event.reason,
            "confidence": event.confidence,
            "candidates": candidate_records(event.candidates),
        }
        self._update(tx, event, position, route_decision=json.dumps(decision, sort_keys=True))

    @reads(Request.Admitted)
    def _admitted(self, tx: Tx, event: Any, position: int) -> None:
        self._update(
            tx,
            event,
            position,
            status="admitted",
            model=event.model,
            provider=event.provider,
            upstream_model=event.upstream_model,
            currency=event.currency,
            reserved_amount=event.reserved_amount,
            **_price_columns(event),
            fee_rate=event.fee_rate,
            key_source=event.key_source,
            admitted_at=iso(event.admitted_at),
            admission_event_id=_event_id(event),
            pricing_event_id=_event_id(event),
            admission_pricing=_pricing_json(event),
        )

    @reads(Request.Repriced)
    def _repriced(self, tx: Tx, event: Any, position: int) -> None:
        # A failover to another model: the charge uses this price and rate from now on, so
        # the record's price is this one (the admission's stays in admission_pricing).
        self._update(
            tx,
            event,
            position,
            **_price_columns(event),
            pricing_event_id=_event_id(event),
            repriced_at=iso(event.repriced_at),
        )

    @reads(Request.DocumentsProcessed)
    def _documents_processed(self, tx: Tx, event: Any, position: int) -> None:
        ocr = {
            "event_id": _event_id(event),
            "documents": event.documents,
            "pages": event.pages,
            "ocr_model": event.ocr_model,
            "per_page": price_text(event.per_page),
            "price_currency": event.price_currency,
            "price_effective_from": time_text(event.price_effective_from),
            "cost": money_text(event.cost),
            "fx_rate": fx_rate_text(event.fx_rate),
            "fx_rate_id": event.fx_rate_id,
            "processed_at": time_text(event.processed_at),
        }
        self._update(tx, event, position, ocr=json.dumps(ocr, sort_keys=True))

    @reads(Request.Dispatched)
    def _dispatched(self, tx: Tx, event: Any, position: int) -> None:
        aggregate_id = str(event.originator_id)
        pending = self._changed.get(aggregate_id, {})
        if "attempt_log" in pending:  # an earlier attempt in this batch
            text = pending["attempt_log"]
        elif aggregate_id in self._created:
            # Received in this batch: its row is written by this batch's flush (the view's
            # position never lets a Received be applied twice), so it has no attempts yet.
            text = None
        else:
            row = tx.execute(
                "SELECT attempt_log FROM lg_audit WHERE aggregate_id = %s", (aggregate_id,)
            ).fetchone()
            text = row["attempt_log"] if row else None
        log = json.loads(text) if text else []
        log.append(
            {
                "event_id": _event_id(event),
                "attempt": event.attempt,
                "provider": event.provider,
                "model": event.model,
                "upstream_model": event.upstream_model,
                "endpoint": f"{event.provider}:{event.endpoint_name}",
                "dispatched_at": time_text(event.dispatched_at),
            }
        )
        self._update(
            tx,
            event,
            position,
            status="dispatched",
            provider=event.provider,
            model=event.model,
            upstream_model=event.upstream_model,
            endpoint_name=event.endpoint_name,
            attempts=event.attempt,
            dispatched_at=iso(event.dispatched_at),
            attempt_log=json.dumps(log, sort_keys=True),
        )

    @reads(Request.StreamingStarted)
    def _streaming_started(self, tx: Tx, event: Any, position: int) -> None:
        self._update(tx, event, position, status="streaming", first_chunk_ms=event.first_chunk_ms)

    @reads(Request.Completed)
    def _completed(self, tx: Tx, event: Any, position: int) -> None:
        self._update(
            tx,
            event,
            position,
            status="completed",
            http_status=200,
            **_settled_usage(event),
            finished_at=iso(event.completed_at),
            cache=event.cache,
            cache_origin_request_id=event.cache_origin_request_id,
        )

    @reads(Request.Failed)
    def _failed(self, tx: Tx, event: Any, position: int) -> None:
        self._update(
            tx,
            event,
            position,
            status="failed",
            **_error_columns(event),
            delivered_chunks=event.delivered_chunks,
            **_charged_usage(event),
            finished_at=iso(event.failed_at),
        )

    @reads(Request.Abandoned)
    def _abandoned(self, tx: Tx, event: Any, position: int) -> None:
        self._update(
            tx,
            event,
            position,
            status="abandoned",
            error_code="abandoned",
            error_message=event.reason,
            cost=event.charged_amount,
            usage_source="estimated" if event.charged_amount else None,
            finished_at=iso(event.abandoned_at),
        )

    @reads(Request.DeadlineExtended)
    def _deadline_extended(self, tx: Tx, event: Any, position: int) -> None:
        # The serving process renewed its lease: the sweeper reads this deadline.
        self._update(tx, event, position, deadline_at=iso(event.deadline_at))

    @reads(Request.UsageFlagged)
    def _usage_flagged(self, tx: Tx, event: Any, position: int) -> None:
        self._update(tx, event, position, usage_flag=",".join(event.problems))

    @reads(Request.SweepCorrected)
    def _sweep_corrected(self, tx: Tx, event: Any, position: int) -> None:
        # Abandoned stays its state; the record now shows the real usage and charge.
        self._update(tx, event, position, sweep_corrected=1, **_settled_usage(event))

    def _update(self, tx: Tx, event: Any, position: int, **columns: Any) -> None:
        """Set `columns` (and the position) on the request's row, at the batch's flush."""
        pending = self._changed.setdefault(str(event.originator_id), {})
        pending.update(columns)
        pending.pop("position", None)
        pending["position"] = position


def _error_columns(event: Any) -> dict[str, Any]:
    """What a Rejected or a Failed event says went wrong."""
    return {
        "http_status": event.http_status,
        "error_code": event.error_code,
        "error_type": event.error_type,
        "error_message": event.message,
    }


def _charged_usage(event: Any) -> dict[str, Any]:
    """The usage and charge a Failed, a Completed or a SweepCorrected event records."""
    return {
        "input_tokens": event.input_tokens,
        "output_tokens": event.output_tokens,
        "usage_source": event.usage_source,
        "cost": event.charged_amount,
        "provider_cost": event.provider_cost,
        "fee_amount": event.fee_amount,
        "latency_ms": event.latency_ms,
    }


def _settled_usage(event: Any) -> dict[str, Any]:
    """The usage and charge a Completed or a SweepCorrected event settles on."""
    return {
        **_charged_usage(event),
        "cached_tokens": event.cached_tokens,
        "finish_reason": event.finish_reason,
        "shortfall_amount": event.shortfall_amount,
        "completion_chars": event.completion_chars,
        "upstream_ms": event.upstream_ms,
    }


def _str(value: Any) -> str | None:
    return None if value is None else str(value)
