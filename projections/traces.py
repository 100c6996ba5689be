"""The trace-span projection (issue 12): governed traces, the tree of their spans, and cost,
tokens and latency rolled up each subtree.

From the Trace aggregate's events a row per trace (its contract, status and totals); from
the requests' events a row per span (span id = request id): SpanJoined places it in the
tree (parent, depth, start), the lifecycle events fill in the model and provider that
served it, its status, tokens, cost (what the project was debited, as the request's
terminal event records it) and timings. Each change of a span's own figures is added to
its subtree's figures and those of every ancestor (a tree is at most `MAX_DEPTH_MAX` deep),
and to the trace's totals: the root's roll-up.

Rebuildable like every view: rows and the tracking position move in one transaction;
dropping the rows and replaying from zero gives the same rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from domain.request import Request
from domain.trace import SpanJoined, Trace
from projections.base import View, reads
from projections.db import (
    ReadStore,
    Tx,
    as_datetime,
    as_decimal,
    iso,
    page_limit,
    placeholders,
    time_range,
)

ZERO = Decimal(0)
TRACES_PAGE_MAX = 200
TRACES_PAGE_DEFAULT = 50
SPANS_PER_READ_MAX = 10_000  # one trace's tree in one answer; past it the read says so
TRACE_STATUSES = ("open", "closed", "expired")


def _money(value: Any) -> str:
    return format(as_decimal(value) or ZERO, "f")


def _earlier(instant: str | None, other: str | None) -> str | None:
    """The earlier of two instants in fixed-width UTC text (they compare as text); an
    absent one (None) is no bound."""
    return instant if other is None or (instant is not None and instant <= other) else other


def _later(instant: str | None, other: str | None) -> str | None:
    """The later of two instants in fixed-width UTC text; an absent one (None) is no bound."""
    return instant if other is None or (instant is not None and instant >= other) else other


# The request events that change a span: a request in no governed trace (most of them) has
# no span row, and these would look for it one statement each.
SPAN_EVENTS: tuple[type[Any], ...] = (
    Request.Dispatched,
    Request.Repriced,
    Request.StreamingStarted,
    Request.Completed,
    Request.Failed,
    Request.Abandoned,
    Request.SweepCorrected,
)
SPAN_IDS_PER_READ = 500  # aggregate ids per IN list of the read-ahead


class TraceSpansView(View):
    name = "trace_spans"
    tables = ("lg_traces", "lg_trace_spans")

    def __init__(self) -> None:
        # Set by `prepare` for one batch: the requests of the batch's span events, and which
        # of them are spans (rows already, or joined in the batch). None: not prepared,
        # every event looks its span up.
        self._looked_up: set[str] | None = None
        self._spans: set[str] = set()

    def prepare(self, tx: Tx, events: Sequence[Any]) -> None:
        """Which requests of the batch have a span, in one read per 500 of them: a span
        event of any other request is passed over without a statement. Exact with several
        projection processes: the view's tracking row is locked for the transaction
        (projections/runner.locked_view_position), so no other applies it meanwhile, and a
        span joined within the batch is added as it is applied."""
        wanted = {str(event.originator_id) for event in events if type(event) in SPAN_EVENTS}
        spans: set[str] = set()
        ordered = sorted(wanted)
        for start in range(0, len(ordered), SPAN_IDS_PER_READ):
            chunk = ordered[start : start + SPAN_IDS_PER_READ]
            rows = tx.execute(
                "SELECT aggregate_id FROM lg_trace_spans "  # noqa: S608 - placeholders only
                f"WHERE aggregate_id IN ({placeholders(len(chunk))})",
                chunk,
            ).fetchall()
            spans.update(row["aggregate_id"] for row in rows)
        self._looked_up, self._spans = wanted, spans

    def flush(self, tx: Tx) -> None:
        self._looked_up, self._spans = None, set()

    def discard(self) -> None:
        self._looked_up, self._spans = None, set()

    def reset(self, tx: Tx) -> None:
        super().reset(tx)
        self.discard()

    def _no_span(self, event: Any) -> bool:
        """Known, from the batch's read-ahead, to be a request in no governed trace."""
        if self._looked_up is None:
            return False
        aggregate_id = str(event.originator_id)
        return aggregate_id in self._looked_up and aggregate_id not in self._spans

    # --- traces ----------------------------------------------------------------------------

    @reads(Trace.Opened)
    def _opened(self, tx: Tx, event: Trace.Opened, position: int) -> None:
        tx.execute(
            "INSERT INTO lg_traces (trace_id, aggregate_id, project_id, mode, name, status, budget, currency, "
            "max_depth, allowed_models, resolved_models, metadata, opened_at, expires_at, "
            "closed_at, expired_at, spans, cost, input_tokens, output_tokens, "
            "last_finished_at, opened_position, position) VALUES (%s, %s, %s, %s, %s, 'open', %s, "
            "%s, %s, %s, %s, %s, %s, %s, NULL, NULL, 0, '0', 0, 0, NULL, %s, %s) "
            "ON CONFLICT (trace_id) DO NOTHING",
            (
                event.trace_id,
                str(event.originator_id),
                str(event.project_id),
                event.mode,
                event.name,
                _money(event.budget),
                event.currency,
                int(event.max_depth),
                json.dumps(list(event.allowed_models_requested)),
                json.dumps(list(event.allowed_models)),
                json.dumps({str(k): str(v) for k, v in event.metadata}, sort_keys=True),
                iso(event.opened_at),
                iso(event.expires_at),
                position,
                position,
            ),
        )

    @reads(Trace.Closed)
    def _closed(self, tx: Tx, event: Trace.Closed, position: int) -> None:
        tx.execute(
            "UPDATE lg_traces SET status = 'closed', closed_at = %s, position = %s "
            "WHERE aggregate_id = %s",
            (iso(event.closed_at), position, str(event.originator_id)),
        )

    @reads(Trace.Expired)
    def _expired(self, tx: Tx, event: Trace.Expired, position: int) -> None:
        tx.execute(
            "UPDATE lg_traces SET status = 'expired', expired_at = %s, position = %s "
            "WHERE aggregate_id = %s",
            (iso(event.observed_at), position, str(event.originator_id)),
        )

    # --- spans -----------------------------------------------------------------------------

    @reads(SpanJoined)
    def _joined(self, tx: Tx, event: SpanJoined, position: int) -> None:
        trace = tx.execute(
            "SELECT project_id FROM lg_traces WHERE trace_id = %s", (event.trace_id,)
        ).fetchone()
        if trace is None:
            return  # cannot happen: a span is admitted only into an opened trace
        span_id = event.span_id
        self._spans.add(str(event.originator_id))
        started = iso(event.started_at)
        inserted = tx.execute(
            "INSERT INTO lg_trace_spans (span_id, aggregate_id, trace_id, project_id, parent_span_id, depth, "
            "endpoint, status, model, provider, attempts, input_tokens, output_tokens, "
            "cached_tokens, cost, started_at, first_chunk_ms, finished_at, latency_ms, "
            "error_code, subtree_spans, subtree_cost, subtree_input_tokens, "
            "subtree_output_tokens, subtree_started_at, subtree_finished_at, joined_position, "
            "position) VALUES (%s, %s, %s, %s, %s, %s, %s, 'admitted', NULL, NULL, 0, 0, 0, 0, "
            "'0', %s, NULL, NULL, NULL, NULL, 0, '0', 0, 0, %s, NULL, %s, %s) "
            "ON CONFLICT (span_id) DO NOTHING",
            (
                span_id,
                str(event.originator_id),
                event.trace_id,
                trace["project_id"],
                event.parent_span_id,
                int(event.depth),
                event.endpoint,
                started,
                started,
                position,
                position,
            ),
        ).rowcount
        if inserted:
            self._roll_up(tx, span_id, position, spans=1, started_at=started)

    @reads(Request.Dispatched)
    def _dispatched(self, tx: Tx, event: Request.Dispatched, position: int) -> None:
        self._update_span(
            tx,
            event,
            position,
            "status = 'dispatched', model = %s, provider = %s, attempts = %s",
            (event.model, event.provider, int(event.attempt)),
        )

    @reads(Request.Repriced)
    def _repriced(self, tx: Tx, event: Request.Repriced, position: int) -> None:
        self._update_span(tx, event, position, "model = %s", (event.model,))

    @reads(Request.StreamingStarted)
    def _streaming(self, tx: Tx, event: Request.StreamingStarted, position: int) -> None:
        self._update_span(
            tx,
            event,
            position,
            "status = 'streaming', first_chunk_ms = %s",
            (int(event.first_chunk_ms),),
        )

    @reads(Request.Completed)
    def _completed(self, tx: Tx, event: Request.Completed, position: int) -> None:
        self._settle(tx, event, position, "completed", event.completed_at, None)

    @reads(Request.Failed)
    def _failed(self, tx: Tx, event: Request.Failed, position: int) -> None:
        self._settle(tx, event, position, "failed", event.failed_at, event.error_code)

    @reads(Request.Abandoned)
    def _abandoned(self, tx: Tx, event: Request.Abandoned, position: int) -> None:
        self._settle(tx, event, position, "abandoned", event.abandoned_at, None)

    @reads(Request.SweepCorrected)
    def _corrected(self, tx: Tx, event: Request.SweepCorrected, position: int) -> None:
        self._settle(tx, event, position, "abandoned", event.corrected_at, None)

    # --- the roll-up -----------------------------------------------------------------------

    def _span(self, tx: Tx, event: Any) -> dict[str, Any] | None:
        if self._no_span(event):
            return None
        return tx.execute(
            "SELECT * FROM lg_trace_spans WHERE aggregate_id = %s", (str(event.originator_id),)
        ).fetchone()

    def _update_span(
        self, tx: Tx, event: Any, position: int, assignments: str, params: tuple[Any, ...]
    ) -> None:
        if self._no_span(event):
            return
        tx.execute(
            f"UPDATE lg_trace_spans SET {assignments}, position = %s "  # noqa: S608
            "WHERE aggregate_id = %s",
            (*params, position, str(event.originator_id)),
        )

    def _settle(
        self,
        tx: Tx,
        event: Any,
        position: int,
        status: str,
        finished: datetime,
        error_code: str | None,
    ) -> None:
        span = self._span(tx, event)
        if span is None:
            return  # a request in no governed trace
        cost = as_decimal(getattr(event, "charged_amount", None)) or ZERO
        input_tokens = int(getattr(event, "input_tokens", 0) or 0)
        output_tokens = int(getattr(event, "output_tokens", 0) or 0)
        cached_tokens = int(getattr(event, "cached_tokens", 0) or 0)
        latency_ms = _latency_ms(span["started_at"], finished)
        finished_text = iso(finished)
        tx.execute(
            "UPDATE lg_trace_spans SET status = %s, input_tokens = %s, output_tokens = %s, "
            "cached_tokens = %s, cost = %s, finished_at = %s, latency_ms = %s, "
            "error_code = COALESCE(%s, error_code), position = %s WHERE span_id = %s",
            (
                status,
                input_tokens,
                output_tokens,
                cached_tokens,
                _money(cost),
                finished_text,
                latency_ms,
                error_code,
                position,
                span["span_id"],
            ),
        )
        self._roll_up(
            tx,
            span["span_id"],
            position,
            cost=cost - (as_decimal(span["cost"]) or ZERO),
            input_tokens=input_tokens - int(span["input_tokens"]),
            output_tokens=output_tokens - int(span["output_tokens"]),
            finished_at=finished_text,
        )

    def _roll_up(
        self,
        tx: Tx,
        span_id: str,
        position: int,
        *,
        spans: int = 0,
        cost: Decimal = ZERO,
        input_tokens: int = 0,
        output_tokens: int = 0,
        started_at: str | None = None,
        finished_at: str | None = None,
    ) -> None:
        """Add a change of one span's own figures to its subtree and every ancestor's, then
        to the trace's totals. Instants are fixed-width UTC text: they compare as text."""
        current: str | None = span_id
        trace_id = None
        while current is not None:
            row = tx.execute(
                "SELECT trace_id, parent_span_id, subtree_cost, subtree_started_at, "
                "subtree_finished_at FROM lg_trace_spans WHERE span_id = %s",
                (current,),
            ).fetchone()
            if row is None:
                break
            trace_id = row["trace_id"]
            tx.execute(
                "UPDATE lg_trace_spans SET subtree_spans = subtree_spans + %s, "
                "subtree_cost = %s, subtree_input_tokens = subtree_input_tokens + %s, "
                "subtree_output_tokens = subtree_output_tokens + %s, subtree_started_at = %s, "
                "subtree_finished_at = %s, position = %s WHERE span_id = %s",
                (
                    spans,
                    _money((as_decimal(row["subtree_cost"]) or ZERO) + cost),
                    input_tokens,
                    output_tokens,
                    _earlier(row["subtree_started_at"], started_at),
                    _later(row["subtree_finished_at"], finished_at),
                    position,
                    current,
                ),
            )
            current = row["parent_span_id"]
        if trace_id is None:
            return
        trace = tx.execute(
            "SELECT cost, last_finished_at FROM lg_traces WHERE trace_id = %s", (trace_id,)
        ).fetchone()
        if trace is None:
            return
        tx.execute(
            "UPDATE lg_traces SET spans = spans + %s, cost = %s, input_tokens = input_tokens + %s, "
            "output_tokens = output_tokens + %s, last_finished_at = %s, position = %s "
            "WHERE trace_id = %s",
            (
                spans,
                _money((as_decimal(trace["cost"]) or ZERO) + cost),
                input_tokens,
                output_tokens,
                _later(trace["last_finished_at"], finished_at),
                position,
                trace_id,
            ),
        )


# --- queries (the REST reads and the MCP tools share them) ------------------------------------


def _tracked(tx: Tx) -> int:
    return tx.tracked_position(TraceSpansView.name)


def _instant(value: Any) -> str | None:
    moment = as_datetime(value)
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def _latency_ms(start: Any, end: Any) -> int | None:
    begun, ended = as_datetime(start), as_datetime(end)
    if begun is None or ended is None:
        return None
    return int((ended - begun).total_seconds() * 1000)


def _status(row: dict[str, Any], now: datetime) -> str:
    """Expiry is a rule on time: an open trace past `expires_at` reads as expired before
    the expiry is recorded."""
    expires = as_datetime(row["expires_at"])
    if row["status"] == "open" and expires is not None and now >= expires:
        return "expired"
    return str(row["status"])


def _trace_record(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "id": row["trace_id"],
        "object": "trace",
        "name": row["name"],
        "status": _status(row, now),
        "mode": row["mode"],
        "budget": _money(row["budget"]),
        "currency": row["currency"],
        "max_depth": int(row["max_depth"]),
        "allowed_models": json.loads(row["allowed_models"]),
        "resolved_models": json.loads(row["resolved_models"]),
        "metadata": json.loads(row["metadata"]),
        "opened_at": _instant(row["opened_at"]),
        "expires_at": _instant(row["expires_at"]),
        "closed_at": _instant(row["closed_at"]),
        "expired_at": _instant(row["expired_at"]),
        "spans": int(row["spans"]),
        "cost": _money(row["cost"]),
        "input_tokens": int(row["input_tokens"]),
        "output_tokens": int(row["output_tokens"]),
        "last_finished_at": _instant(row["last_finished_at"]),
        "latency_ms": _latency_ms(row["opened_at"], row["last_finished_at"]),
        "position": int(row["position"]),
    }


def list_traces(
    store: ReadStore,
    *,
    project_id: str,
    now: datetime,
    after: int = 0,
    limit: int = TRACES_PAGE_DEFAULT,
    since: datetime | None = None,
    until: datetime | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    """The project's traces in the order they were opened (the cursor is the last one's
    log position), opened within [since, until), optionally of one status."""
    limit = page_limit(limit, TRACES_PAGE_MAX)
    clauses = ["project_id = %s", "opened_position > %s"]
    params: list[Any] = [project_id, after]
    time_range(clauses, params, "opened_at", since, until, iso)
    if status == "expired":
        clauses.append("(status = 'expired' OR (status = 'open' AND expires_at <= %s))")
        params.append(iso(now))
    elif status == "open":
        clauses.append("status = 'open' AND (expires_at IS NULL OR expires_at > %s)")
        params.append(iso(now))
    elif status is not None:
        clauses.append("status = %s")
        params.append(status)
    page, has_more, position = store.read_page(
        TraceSpansView.name,
        f"SELECT * FROM lg_traces WHERE {' AND '.join(clauses)} "  # noqa: S608
        "ORDER BY opened_position",
        params,
        limit,
    )
    return {
        "object": "list",
        "data": [_trace_record(row, now) for row in page],
        "next_cursor": str(page[-1]["opened_position"]) if has_more and page else None,
        "as_of_position": position,
    }


def _span_record(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "span_id": row["span_id"],
        "parent_span_id": row["parent_span_id"],
        "depth": int(row["depth"]),
        "endpoint": row["endpoint"],
        "status": row["status"],
        "model": row["model"],
        "provider": row["provider"],
        "attempts": int(row["attempts"]),
        "input_tokens": int(row["input_tokens"]),
        "output_tokens": int(row["output_tokens"]),
        "cached_tokens": int(row["cached_tokens"]),
        "cost": _money(row["cost"]),
        "started_at": _instant(row["started_at"]),
        "first_chunk_ms": row["first_chunk_ms"],
        "finished_at": _instant(row["finished_at"]),
        "latency_ms": row["latency_ms"],
        "error_code": row["error_code"],
        "subtree": _subtree(
            row["subtree_spans"],
            row["subtree_cost"],
            row["subtree_input_tokens"],
            row["subtree_output_tokens"],
            row["subtree_started_at"],
            row["subtree_finished_at"],
        ),
        "children": [],
    }


def _subtree(
    spans: Any, cost: Any, input_tokens: Any, output_tokens: Any, started_at: Any, finished_at: Any
) -> dict[str, Any]:
    """A subtree's roll-up as a read shows it: a span's from its subtree columns, the root's
    from the trace's totals (opened at the trace's opening, finished at its last span's end)."""
    return {
        "spans": int(spans),
        "cost": _money(cost),
        "input_tokens": int(input_tokens),
        "output_tokens": int(output_tokens),
        "started_at": _instant(started_at),
        "finished_at": _instant(finished_at),
        "latency_ms": _latency_ms(started_at, finished_at),
    }


def get_trace_tree(
    store: ReadStore, *, project_id: str, trace_id: str, now: datetime
) -> dict[str, Any] | None:
    """One trace of the project with its span tree (children in the order they joined),
    or None: unknown and another project's trace read the same."""
    with store.transaction(write=False) as tx:
        position = _tracked(tx)
        trace = tx.execute(
            "SELECT * FROM lg_traces WHERE trace_id = %s AND project_id = %s",
            (trace_id, project_id),
        ).fetchone()
        if trace is None:
            return None
        rows = tx.execute(
            "SELECT * FROM lg_trace_spans WHERE trace_id = %s AND project_id = %s "
            "ORDER BY joined_position LIMIT %s",
            (trace_id, project_id, SPANS_PER_READ_MAX + 1),
        ).fetchall()
    truncated = len(rows) > SPANS_PER_READ_MAX
    spans = {row["span_id"]: _span_record(row) for row in rows[:SPANS_PER_READ_MAX]}
    roots: list[dict[str, Any]] = []
    for span in spans.values():
        parent = spans.get(span["parent_span_id"]) if span["parent_span_id"] else None
        (parent["children"] if parent is not None else roots).append(span)
    return {
        **_trace_record(trace, now),
        "root": {
            "span_id": trace_id,
            "subtree": _subtree(
                trace["spans"],
                trace["cost"],
                trace["input_tokens"],
                trace["output_tokens"],
                trace["opened_at"],
                trace["last_finished_at"],
            ),
            "children": roots,
        },
        "truncated": truncated,
        "as_of_position": position,
    }


def expired_open_traces(store: ReadStore, now: datetime, limit: int = 100) -> list[dict[str, Any]]:
    """Traces past their `expires_at` whose expiry is not recorded yet (for the sweep)."""
    with store.transaction(write=False) as tx:
        rows = tx.execute(
            "SELECT trace_id, project_id, mode FROM lg_traces WHERE status = 'open' "
            "AND expires_at IS NOT NULL AND expires_at <= %s ORDER BY expires_at LIMIT %s",
            (iso(now), limit),
        ).fetchall()
    return [dict(row) for row in rows]
