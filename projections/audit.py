"""The audit log: one row per request, built from the Request aggregate's events."""

from __future__ import annotations

import json
from typing import Any

from domain.request import Request
from projections.base import View
from projections.db import Tx, iso


class AuditView(View):
    name = "audit"
    tables = ("lg_audit",)
    event_types = (
        Request.Received,
        Request.PiiScreened,
        Request.Rejected,
        Request.Admitted,
        Request.Dispatched,
        Request.StreamingStarted,
        Request.Completed,
        Request.Failed,
        Request.Abandoned,
        Request.DeadlineExtended,
        Request.UsageFlagged,
        Request.SweepCorrected,
    )

    def apply(self, tx: Tx, event: Any, position: int) -> None:
        if isinstance(event, Request.Received):
            tx.execute(
                """
                INSERT INTO lg_audit (request_id, aggregate_id, project_id, key_id, actor_id, endpoint, model_requested,
                    stream, status, message_count, prompt_chars, prompt_sha256, trace_id,
                    received_at, deadline_at, attempts, position, mode, conversation_id)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'received', %s, %s, %s, %s, %s, %s, 0, %s, %s, %s)
                ON CONFLICT (request_id) DO NOTHING
                """,
                (
                    event.request_id,
                    str(event.originator_id),
                    _str(event.project_id),
                    _str(event.key_id),
                    event.actor_id,
                    event.endpoint,
                    event.model_requested,
                    bool(event.stream),
                    event.message_count,
                    event.prompt_chars,
                    event.prompt_sha256,
                    event.trace_id,
                    iso(event.received_at),
                    iso(event.deadline_at),
                    position,
                    event.mode,
                    event.conversation_id,
                ),
            )
            return
        request_id = str(event.originator_id)  # later events are matched by aggregate id
        if isinstance(event, Request.PiiScreened):
            # Integers, not booleans: the same SQL runs on SQLite and PostgreSQL INTEGER columns.
            self._update(
                tx,
                request_id,
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
        elif isinstance(event, Request.Rejected):
            self._update(
                tx,
                request_id,
                position,
                status="rejected",
                http_status=event.http_status,
                error_code=event.error_code,
                error_type=event.error_type,
                error_message=event.message,
                finished_at=iso(event.rejected_at),
            )
        elif isinstance(event, Request.Admitted):
            self._update(
                tx,
                request_id,
                position,
                status="admitted",
                model=event.model,
                provider=event.provider,
                upstream_model=event.upstream_model,
                currency=event.currency,
                reserved_amount=event.reserved_amount,
                price_id=event.price_id,
                price_effective_from=iso(event.price_effective_from),
                input_price_per_mtok=event.input_price_per_mtok,
                output_price_per_mtok=event.output_price_per_mtok,
                price_currency=event.price_currency,
                fx_rate=event.fx_rate,
                fx_rate_id=event.fx_rate_id,
                fee_rate=event.fee_rate,
                key_source=event.key_source,
                admitted_at=iso(event.admitted_at),
            )
        elif isinstance(event, Request.Dispatched):
            tx.execute(
                "UPDATE lg_audit SET status = 'dispatched', provider = %s, model = %s, upstream_model = %s, "
                "endpoint_name = %s, attempts = %s, dispatched_at = %s, position = %s WHERE aggregate_id = %s",
                (
                    event.provider,
                    event.model,
                    event.upstream_model,
                    event.endpoint_name,
                    event.attempt,
                    iso(event.dispatched_at),
                    position,
                    request_id,
                ),
            )
        elif isinstance(event, Request.StreamingStarted):
            self._update(
                tx, request_id, position, status="streaming", first_chunk_ms=event.first_chunk_ms
            )
        elif isinstance(event, Request.Completed):
            self._update(
                tx,
                request_id,
                position,
                status="completed",
                http_status=200,
                input_tokens=event.input_tokens,
                output_tokens=event.output_tokens,
                cached_tokens=event.cached_tokens,
                usage_source=event.usage_source,
                finish_reason=event.finish_reason,
                cost=event.charged_amount,
                provider_cost=event.provider_cost,
                fee_amount=event.fee_amount,
                shortfall_amount=event.shortfall_amount,
                completion_chars=event.completion_chars,
                latency_ms=event.latency_ms,
                upstream_ms=event.upstream_ms,
                finished_at=iso(event.completed_at),
                cache=event.cache,
                cache_origin_request_id=event.cache_origin_request_id,
            )
        elif isinstance(event, Request.Failed):
            self._update(
                tx,
                request_id,
                position,
                status="failed",
                http_status=event.http_status,
                error_code=event.error_code,
                error_type=event.error_type,
                error_message=event.message,
                delivered_chunks=event.delivered_chunks,
                input_tokens=event.input_tokens,
                output_tokens=event.output_tokens,
                usage_source=event.usage_source,
                cost=event.charged_amount,
                provider_cost=event.provider_cost,
                fee_amount=event.fee_amount,
                latency_ms=event.latency_ms,
                finished_at=iso(event.failed_at),
            )
        elif isinstance(event, Request.Abandoned):
            self._update(
                tx,
                request_id,
                position,
                status="abandoned",
                error_code="abandoned",
                error_message=event.reason,
                cost=event.charged_amount,
                usage_source="estimated" if event.charged_amount else None,
                finished_at=iso(event.abandoned_at),
            )

        elif isinstance(event, Request.DeadlineExtended):
            # The serving process renewed its lease: the sweeper reads this deadline.
            self._update(tx, request_id, position, deadline_at=iso(event.deadline_at))
        elif isinstance(event, Request.UsageFlagged):
            self._update(tx, request_id, position, usage_flag=",".join(event.problems))
        elif isinstance(event, Request.SweepCorrected):
            # Abandoned stays its state; the record now shows the real usage and charge.
            self._update(
                tx,
                request_id,
                position,
                sweep_corrected=1,
                input_tokens=event.input_tokens,
                output_tokens=event.output_tokens,
                cached_tokens=event.cached_tokens,
                usage_source=event.usage_source,
                finish_reason=event.finish_reason,
                cost=event.charged_amount,
                provider_cost=event.provider_cost,
                fee_amount=event.fee_amount,
                shortfall_amount=event.shortfall_amount,
                completion_chars=event.completion_chars,
                latency_ms=event.latency_ms,
                upstream_ms=event.upstream_ms,
            )

    @staticmethod
    def _update(tx: Tx, request_id: str, position: int, **columns: Any) -> None:
        assignments = ", ".join(f"{name} = %s" for name in columns)
        tx.execute(
            f"UPDATE lg_audit SET {assignments}, position = %s WHERE aggregate_id = %s",  # noqa: S608
            (*columns.values(), position, request_id),
        )


def _str(value: Any) -> str | None:
    return None if value is None else str(value)
