"""A request's history from its own events: every transition with its time, the route
decision with its candidates, each dispatch attempt, repricings and document processing.

The audit row (projections/audit.py) keeps the latest state of a request; an auditor also
wants the path it took. That path is the Request aggregate's event stream, read from the
event store (the source of truth), so nothing new is stored. Events carry no secret and no
raw PII value (domain/request.py); the client's IP is left out all the same, as the audit
row leaves it out.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any

from domain.application import LedgerApplication
from domain.ids import request_aggregate_id
from domain.request import Request
from projections.audit import candidate_records

# A Request aggregate records a handful of events (one per transition, one per failover
# attempt); more than this is not a request's history but a defect, so stop reading there.
HISTORY_EVENTS_MAX = 500
# Fields never shown, even though the project could ask: the audit row omits them too.
HIDDEN_FIELDS = frozenset({"client_ip", "idempotency_key_sha256"})
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def _event_name(event: Any) -> str:
    return _CAMEL.sub("_", type(event).__name__).lower()


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _fields(event: Any) -> dict[str, Any]:
    return {
        name: _plain(value)
        for name, value in vars(event).items()
        if name not in HIDDEN_FIELDS
        and name not in ("originator_id", "originator_version", "timestamp")
    }


def _instant(event: Any, fields: dict[str, Any]) -> str:
    """The event's own business time (`*_at`), else the time it was recorded."""
    for name, value in fields.items():
        if name.endswith("_at") and isinstance(value, str):
            return value
    return _plain(event.timestamp)


def request_history(app: LedgerApplication, request_id: str) -> dict[str, Any]:
    """`transitions`, `route`, `dispatches`, `repricings`, `documents` and `pii_screening`
    of one request (empty when the store holds no such request)."""
    events = list(
        app.repository.event_store.get(request_aggregate_id(request_id), limit=HISTORY_EVENTS_MAX)
    )
    transitions: list[dict[str, Any]] = []
    dispatches: list[dict[str, Any]] = []
    repricings: list[dict[str, Any]] = []
    route: dict[str, Any] | None = None
    documents: dict[str, Any] | None = None
    pii_screening: dict[str, Any] | None = None
    for event in events:
        fields = _fields(event)
        at = _instant(event, fields)
        transitions.append(
            {"event": _event_name(event), "at": at, "version": int(event.originator_version)}
        )
        if isinstance(event, Request.RouteDecided):
            # The candidates shaped as the audit record shapes them (one function).
            route = {**fields, "candidates": candidate_records(event.candidates)}
        elif isinstance(event, Request.Dispatched):
            dispatches.append(fields)
        elif isinstance(event, Request.Repriced):
            repricings.append(fields)
        elif isinstance(event, Request.DocumentsProcessed):
            documents = fields
        elif isinstance(event, Request.PiiScreened):
            # Entity types only, never a value; the audit row lacks these two fields.
            pii_screening = {
                "policy_source": fields.get("policy_source"),
                "blocked_entity_types": fields.get("blocked_entity_types") or [],
            }
    return {
        "transitions": transitions,
        "route": route,
        "dispatches": dispatches,
        "repricings": repricings,
        "documents": documents,
        "pii_screening": pii_screening,
    }


__all__ = ["HISTORY_EVENTS_MAX", "request_history"]
