"""Query functions over the read models. Every answer reports the position it reflects."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from domain.request import NON_TERMINAL_STATES
from projections.balances import balance_table
from projections.db import (
    FEE_RATE_SCALE,
    FX_RATE_SCALE,
    MONEY_SCALE,
    PRICE_SCALE,
    ReadStore,
    as_decimal,
    decimal_text,
    equal_filters,
    money_text,
    page_limit,
    placeholders,
    time_range,
    time_text,
)

AUDIT_PAGE_MAX = 500
AUDIT_PAGE_DEFAULT = 50
AUDIT_ORDERS = ("asc", "desc")

# Each decimal column of the audit row and the scale it reads at (projections/db.py).
DECIMAL_COLUMNS = {
    "reserved_amount": MONEY_SCALE,
    "cost": MONEY_SCALE,
    "provider_cost": MONEY_SCALE,
    "fee_amount": MONEY_SCALE,
    "shortfall_amount": MONEY_SCALE,
    "input_price_per_mtok": PRICE_SCALE,
    "output_price_per_mtok": PRICE_SCALE,
    "fx_rate": FX_RATE_SCALE,
    "fee_rate": FEE_RATE_SCALE,
}
TIME_COLUMNS = (
    "received_at",
    "deadline_at",
    "admitted_at",
    "dispatched_at",
    "finished_at",
    "price_effective_from",
    "repriced_at",
)
# How an attempt ended when the request ended in this state (earlier attempts failed over).
_LAST_ATTEMPT_OUTCOME = {"completed": "completed", "failed": "failed", "abandoned": "abandoned"}


class InvalidCursor(ValueError):
    pass


def audit_record(row: dict[str, Any]) -> dict[str, Any]:
    record = dict(row)
    record.pop("aggregate_id", None)
    for column, scale in DECIMAL_COLUMNS.items():
        record[column] = decimal_text(record.get(column), scale)
    for column in TIME_COLUMNS:
        record[column] = time_text(record.get(column))
    record["stream"] = bool(record.get("stream"))
    record["sweep_corrected"] = bool(record.get("sweep_corrected"))
    _pii_fields(record)
    admission = _json(record.pop("admission_pricing", None))
    record["pricing"] = {
        "price_id": record.get("price_id"),
        "effective_from": record.get("price_effective_from"),
        "input_per_mtok": record.get("input_price_per_mtok"),
        "output_per_mtok": record.get("output_price_per_mtok"),
        "price_currency": record.get("price_currency"),
        "fx_rate": record.get("fx_rate"),
        "fx_rate_id": record.get("fx_rate_id"),
        "fee_rate": record.get("fee_rate"),
        # The request event that set this price and rate: Admitted, or a failover's Repriced.
        "set_by_event_id": record.pop("pricing_event_id", None),
        "repriced": record.get("repriced_at") is not None,
        "repriced_at": record.pop("repriced_at", None),
        "admission": admission,
    }
    record["route_decision"] = _json(record.get("route_decision"))
    record["ocr"] = _json(record.get("ocr"))
    record["attempt_log"] = _attempt_log(record.get("attempt_log"), record.get("status"))
    return record


def _json(text: Any) -> Any:
    return json.loads(text) if text else None


def _attempt_log(text: Any, status: Any) -> list[dict[str, Any]]:
    """Every dispatch attempt in order, with how it ended: each but the last failed over;
    the last ended as the request did (None while it is in flight)."""
    attempts: list[dict[str, Any]] = _json(text) or []
    for index, attempt in enumerate(attempts):
        last = index == len(attempts) - 1
        attempt["outcome"] = _LAST_ATTEMPT_OUTCOME.get(str(status)) if last else "failed_over"
    return attempts


def _pii_fields(record: dict[str, Any]) -> None:
    """The PII decision as the audit API shows it: flags as booleans (absent = no policy
    received, not processed), counts by type as an object, never a value."""
    record["pii_policy_received"] = bool(record.get("pii_policy_received"))
    record["pii_processed"] = bool(record.get("pii_processed"))
    record["pii_blocked"] = bool(record.get("pii_blocked"))
    raw_counts = record.get("pii_entity_counts")
    record["pii_entity_counts"] = json.loads(raw_counts) if raw_counts else {}
    if record.get("pii_entities_detected") is None:
        record["pii_entities_detected"] = 0
    if record.get("pii_redactions_applied") is None:
        record["pii_redactions_applied"] = 0
    latency = record.get("pii_latency_ms")
    record["pii_latency_ms"] = float(latency) if latency is not None else None


def encode_cursor(received_at: str, request_id: str) -> str:
    raw = json.dumps([received_at, request_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        received_at, request_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        datetime.fromisoformat(received_at)
        return str(received_at), str(request_id)
    except (ValueError, TypeError) as error:
        raise InvalidCursor("the cursor is not one this API issued") from error


def tracked_position(store: ReadStore, view: str) -> int:
    with store.transaction(write=False) as tx:
        return tx.tracked_position(view)


def list_audit(
    store: ReadStore,
    *,
    project_id: str | None,
    actor_id: str | None = None,
    model: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = AUDIT_PAGE_DEFAULT,
    conversation_id: str | None = None,
    trace_id: str | None = None,
    key_id: str | None = None,
    provider: str | None = None,
    order: str | None = None,
) -> dict[str, Any]:
    """Newest first (`order="desc"`), or oldest first (`"asc"`: the default when listing
    one conversation, so a thread reads in the order it happened); `cursor` continues
    after the last row of the previous page."""
    limit = page_limit(limit, AUDIT_PAGE_MAX)
    if order is None:
        order = "asc" if conversation_id is not None else "desc"
    if order not in AUDIT_ORDERS:
        raise ValueError(f"order must be one of {', '.join(AUDIT_ORDERS)}")
    clauses: list[str] = []
    params: list[Any] = []
    equal_filters(
        clauses,
        params,
        (
            ("project_id", project_id),
            ("actor_id", actor_id),
            ("status", status),
            ("conversation_id", conversation_id),
            ("trace_id", trace_id),
            ("key_id", key_id),
            ("provider", provider),
        ),
    )
    if model is not None:
        clauses.append("(model = %s OR model_requested = %s)")
        params.extend([model, model])
    time_range(clauses, params, "received_at", since, until, store.instant)
    if cursor:
        received_at, request_id = decode_cursor(cursor)
        after = "<" if order == "desc" else ">"
        clauses.append(f"(received_at {after} %s OR (received_at = %s AND request_id {after} %s))")
        moment = store.instant(datetime.fromisoformat(received_at))
        params.extend([moment, moment, request_id])
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    rows, has_more, position = store.read_page(
        "audit",
        f"SELECT * FROM lg_audit {where} "  # noqa: S608 - columns and order are constants
        f"ORDER BY received_at {order.upper()}, request_id {order.upper()}",
        params,
        limit,
    )
    records = [audit_record(row) for row in rows]
    next_cursor = None
    if has_more and records:
        last = records[-1]
        next_cursor = encode_cursor(last["received_at"], last["request_id"])
    return {
        "object": "list",
        "data": records,
        "has_more": has_more,
        "next_cursor": next_cursor,
        "as_of_position": position,
    }


def get_audit(store: ReadStore, request_id: str) -> tuple[dict[str, Any] | None, int]:
    with store.transaction(write=False) as tx:
        position = tx.tracked_position("audit")
        row = tx.execute("SELECT * FROM lg_audit WHERE request_id = %s", (request_id,)).fetchone()
    return (audit_record(row) if row else None), position


def get_balance(store: ReadStore, project_id: str, mode: str = "live") -> dict[str, Any] | None:
    """The project's live balance, or with mode "test" its test balance (lg_test_ keys)."""
    table = balance_table(mode)
    with store.transaction(write=False) as tx:
        row = tx.execute(
            f"SELECT * FROM {table} WHERE project_id = %s",  # noqa: S608 - one of two constants
            (project_id,),
        ).fetchone()
        position = tx.tracked_position("balances")
    if row is None:
        return None
    return {
        "object": "balance",
        "project_id": row["project_id"],
        "currency": row["currency"],
        "credits": money_text(row["credits"]),
        "posted": money_text(row["posted"]),
        "pending": money_text(row["pending"]),
        "available": money_text(row["available"]),
        "mode": mode,
        "as_of_position": position,
    }


def all_balances(store: ReadStore) -> dict[str, dict[str, Decimal]]:
    with store.transaction(write=False) as tx:
        rows = tx.execute("SELECT * FROM lg_balances ORDER BY project_id").fetchall()
    return {
        row["project_id"]: {
            k: as_decimal(row[k]) or Decimal(0)
            for k in ("credits", "posted", "pending", "available")
        }
        for row in rows
    }


def overdue_requests(store: ReadStore, now: datetime, limit: int = 1000) -> list[str]:
    """Requests with no terminal state whose deadline has passed (the sweeper's work list)."""
    states = sorted(NON_TERMINAL_STATES)

    cutoff = store.instant(now)
    with store.transaction(write=False) as tx:
        rows = tx.execute(
            f"SELECT request_id FROM lg_audit WHERE status IN ({placeholders(len(states))}) AND deadline_at < %s "  # noqa: S608
            "ORDER BY deadline_at LIMIT %s",
            (*states, cutoff, limit),
        ).fetchall()
    return [row["request_id"] for row in rows]


def dump_table(store: ReadStore, table: str, order_by: str) -> list[dict[str, Any]]:
    """The whole content of a view's table, for rebuild-equality checks."""
    with store.transaction(write=False) as tx:
        return tx.execute(f"SELECT * FROM {table} ORDER BY {order_by}").fetchall()  # noqa: S608
