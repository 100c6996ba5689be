"""Queries behind the data API of issue 12 (`/v1/data/pii`, `/models`, `/routing`, pricing
history): each scoped to one project, each answer with the position it reflects. The REST
handlers (gateway/http/data.py) and the MCP tools (gateway/mcp_server.py) both call these.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from projections.audit import candidate_records
from projections.db import ReadStore, iso, page_limit, time_range, time_text
from projections.ledger_queries import _fx_record, _price_record
from projections.project_events import events_of_aggregates, list_project_events
from projections.queries import _pii_fields

PAGE_MAX = 500
PAGE_DEFAULT = 50
# The outcomes a health figure is computed from, per project (the most recent ones).
HEALTH_OUTCOMES_MAX = 20_000
ROUTE_TYPES = ("Request.RouteDecided",)
ATTEMPT_TYPES = ("Request.Received", "Request.Dispatched", "Request.Failed", "Request.Completed")


def pii_decisions(
    store: ReadStore,
    *,
    project_id: str,
    since: datetime | None = None,
    until: datetime | None = None,
    after: int = 0,
    limit: int = PAGE_DEFAULT,
) -> dict[str, Any]:
    """The PII decision of each of the project's screened requests, in log order of their
    screening: policy, entity types and counts, action, latency. Never a value."""
    limit = page_limit(limit, PAGE_MAX)
    clauses = ["project_id = %s", "pii_action IS NOT NULL", "received_at IS NOT NULL"]
    params: list[Any] = [project_id]
    time_range(clauses, params, "received_at", since, until, store.instant)
    # The cursor is the page's last (received_at, request_id) as an offset-free key.
    rows, has_more, position = store.read_page(
        "audit",
        "SELECT request_id, endpoint, status, received_at, pii_policy_received, "
        "pii_processed, pii_action, pii_sensitivity, pii_language, pii_entity_counts, "
        "pii_entities_detected, pii_redactions_applied, pii_latency_ms, pii_blocked, "
        f"pii_failure_code FROM lg_audit WHERE {' AND '.join(clauses)} "  # noqa: S608
        "ORDER BY received_at, request_id",
        params,
        limit,
        offset=after,
    )
    data = []
    for row in rows:
        record = dict(row)
        _pii_fields(record)
        record["received_at"] = time_text(record["received_at"])
        data.append(
            {
                "request_id": record["request_id"],
                "endpoint": record["endpoint"],
                "status": record["status"],
                "received_at": record["received_at"],
                "policy_received": record["pii_policy_received"],
                "processed": record["pii_processed"],
                "action": record["pii_action"],
                "sensitivity": record["pii_sensitivity"],
                "language": record["pii_language"],
                "entity_counts": record["pii_entity_counts"],
                "entities_detected": record["pii_entities_detected"],
                "redactions_applied": record["pii_redactions_applied"],
                "latency_ms": record["pii_latency_ms"],
                "blocked": record["pii_blocked"],
                "failure_code": record["pii_failure_code"],
            }
        )
    return {
        "object": "list",
        "data": data,
        "next_cursor": str(after + limit) if has_more else None,
        "as_of_position": position,
    }


def _percentile(values: list[int], fraction: float) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1)))))
    return ordered[index]


def model_health(
    store: ReadStore,
    *,
    project_id: str,
    since: datetime | None = None,
    until: datetime | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """Per (model, endpoint) of the project's own requests: attempts, success rate, latency
    p50/p95 of successes, the last error class; from the router-statistics outcomes."""
    clauses = ["a.project_id = %s"]
    params: list[Any] = [project_id]
    time_range(clauses, params, "o.observed_at", since, until, iso)
    if model is not None:
        clauses.append("o.model = %s")
        params.append(model)
    with store.transaction(write=False) as tx:
        position = tx.tracked_position("router_stats")
        rows = tx.execute(
            "SELECT o.model, o.provider, o.endpoint, o.success, o.latency_ms, o.error_code, "
            "o.observed_at FROM lg_router_outcomes o JOIN lg_audit a "
            "ON a.aggregate_id = o.request_aggregate_id "
            f"WHERE {' AND '.join(clauses)} "  # noqa: S608 - constant fragments
            "ORDER BY o.position DESC, o.attempt DESC LIMIT %s",
            (*params, HEALTH_OUTCOMES_MAX),
        ).fetchall()
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:  # newest first
        key = (row["model"], row["endpoint"])
        group = groups.setdefault(
            key,
            {
                "model": row["model"],
                "provider": row["provider"],
                "endpoint": row["endpoint"],
                "attempts": 0,
                "successes": 0,
                "latencies": [],
                "last_error_class": None,
                "last_error_at": None,
                "last_seen_at": row["observed_at"],
            },
        )
        group["attempts"] += 1
        if row["success"]:
            group["successes"] += 1
            if row["latency_ms"] is not None:
                group["latencies"].append(int(row["latency_ms"]))
        elif group["last_error_class"] is None:
            group["last_error_class"] = row["error_code"]
            group["last_error_at"] = row["observed_at"]
    data = []
    for group in sorted(groups.values(), key=lambda g: (g["model"], g["endpoint"])):
        latencies = group.pop("latencies")
        group["failures"] = group["attempts"] - group["successes"]
        group["success_rate"] = round(group["successes"] / group["attempts"], 4)
        group["latency_ms_p50"] = _percentile(latencies, 0.50)
        group["latency_ms_p95"] = _percentile(latencies, 0.95)
        data.append(group)
    return {"object": "list", "data": data, "as_of_position": position}


def route_decisions(
    store: ReadStore,
    *,
    project_id: str,
    since: datetime | None = None,
    until: datetime | None = None,
    after: int = 0,
    limit: int = PAGE_DEFAULT,
) -> dict[str, Any]:
    """The project's route decisions in log order: candidates and their scores, the chosen
    target, the reason, and the attempts that followed (failovers and how each ended)."""

    page = list_project_events(
        store,
        project_id=project_id,
        after=after,
        limit=min(limit, PAGE_MAX),
        since=since,
        until=until,
        types=ROUTE_TYPES,
    )
    aggregate_ids = [event["aggregate_id"] for event in page["data"]]
    related = events_of_aggregates(store, project_id, aggregate_ids, ATTEMPT_TYPES)
    by_aggregate: dict[str, list[dict[str, Any]]] = {}
    for event in related:
        by_aggregate.setdefault(event["aggregate_id"], []).append(event)
    data = []
    for event in page["data"]:
        decided = event["data"]
        history = by_aggregate.get(event["aggregate_id"], [])
        request_id = next(
            (e["data"].get("request_id") for e in history if e["type"] == "Request.Received"),
            None,
        )
        attempts: list[dict[str, Any]] = []
        outcome = None
        for item in history:
            fields = item["data"]
            if item["type"] == "Request.Dispatched":
                attempts.append(
                    {
                        "attempt": fields.get("attempt"),
                        "model": fields.get("model"),
                        "provider": fields.get("provider"),
                        "endpoint": f"{fields.get('provider')}:{fields.get('endpoint_name')}",
                        "dispatched_at": fields.get("dispatched_at"),
                    }
                )
            elif item["type"] == "Request.Completed":
                outcome = {"status": "completed", "at": fields.get("completed_at")}
            elif item["type"] == "Request.Failed":
                outcome = {
                    "status": "failed",
                    "error_code": fields.get("error_code"),
                    "http_status": fields.get("http_status"),
                    "at": fields.get("failed_at"),
                }
        data.append(
            {
                "request_id": request_id,
                "position": event["position"],
                "decided_at": decided.get("decided_at"),
                "requested_model": decided.get("requested_model"),
                "mode": decided.get("mode"),
                "variant": decided.get("variant"),
                "tier": decided.get("tier"),
                "chosen": {
                    "model": decided.get("model"),
                    "provider": decided.get("provider"),
                    "upstream_model": decided.get("upstream_model"),
                    "endpoint": decided.get("endpoint"),
                },
                "reason": decided.get("reason"),
                "confidence": decided.get("confidence"),
                # Was labelled (model, endpoint, score): the stored order is (model, score, detail).
                "candidates": candidate_records(decided.get("candidates") or []),
                "failover_plan": decided.get("failover") or [],
                "attempts": attempts,
                "failovers": max(0, len(attempts) - 1),
                "outcome": outcome,
            }
        )
    return {
        "object": "list",
        "data": data,
        "next_cursor": page["next_cursor"],
        "as_of_position": page["as_of_position"],
    }


def pricing_history(
    store: ReadStore, *, model: str, currency: str | None, project_id: str | None
) -> dict[str, Any]:
    """Every effective-dated price of one model (a shipped one, or with `project_id` that
    project's custom model only) and every FX rate between its price currencies and
    `currency`, oldest first."""
    scope = "project_id = %s" if project_id is not None else "project_id IS NULL"
    scope_args: tuple[Any, ...] = (project_id,) if project_id is not None else ()
    with store.transaction(write=False) as tx:
        position = tx.tracked_position("pricing_history")
        prices = tx.execute(
            f"SELECT * FROM lg_pricing_history WHERE kind = 'price' AND model = %s AND {scope} "  # noqa: S608
            "ORDER BY effective_from, position",
            (model, *scope_args),
        ).fetchall()
        fx_rows: list[dict[str, Any]] = []
        price_currencies = sorted({row["currency"] for row in prices})
        for price_currency in price_currencies:
            if not currency or currency == price_currency:
                continue
            for base, quote, inverted in (
                (price_currency, currency, False),
                (currency, price_currency, True),
            ):
                for row in tx.execute(
                    "SELECT * FROM lg_pricing_history WHERE kind = 'fx' AND base = %s "
                    "AND quote = %s ORDER BY effective_from, position",
                    (base, quote),
                ).fetchall():
                    fx_rows.append(_fx_record(row, inverted=inverted))
    fx_rows.sort(key=lambda r: (r["effective_from"] or "", r["position"]))
    return {
        "object": "pricing_history",
        "model": model,
        "currency": currency,
        "prices": [_price_record(row) for row in prices],
        "fx": fx_rows,
        "as_of_position": position,
    }
