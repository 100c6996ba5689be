"""The project reads the REST API and the MCP tools share (issue 12): the audit search and
its filters, parsed once from any mapping (a query string, an MCP tool's arguments), one
request's record, the balance and the caller's model catalog. One home for what a valid
filter is, so `/v1/data/audit` and the MCP tool `search_audit_logs` accept and refuse
exactly the same input and answer the same data."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from domain.clock import parse_instant
from domain.ids import REQUEST_ID_PREFIX
from domain.request import NON_TERMINAL_STATES, TERMINAL_STATES
from domain.tiers import effective_tier
from gateway.errors import GatewayError
from gateway.request_history import request_history
from gateway.routing.models_api import models_listing
from gateway.validation import MODEL_SYNTAX, USER_ID_CHARS_MAX, check_id, check_text
from projections import ledger_queries, queries

AUDIT_STATUSES = TERMINAL_STATES | NON_TERMINAL_STATES
PROVIDER_SYNTAX = re.compile(r"[a-z0-9][a-z0-9_\-]{0,63}")
# Every filter the audit search takes, with the JSON type an MCP client passes.
AUDIT_FILTERS = (
    "actor_id",
    "model",
    "status",
    "conversation_id",
    "trace_id",
    "key_id",
    "provider",
    "since",
    "until",
    "order",
    "cursor",
    "limit",
)


def _invalid(message: str, param: str) -> GatewayError:
    return GatewayError("invalid_request", message, param=param)


def parse_time(params: Mapping[str, Any], name: str) -> Any:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        return parse_instant(str(raw))
    except ValueError:
        raise _invalid(f"{name} must be an ISO 8601 instant with a timezone", name) from None


CURSOR_DIGITS_MAX = 19  # a log position is a BIGINT


def page_limit(params: Mapping[str, Any], default: int, high: int) -> int:
    """A page's `limit`: absent → `default`, else an integer from 1 to `high` (or a 400)."""
    raw = params.get("limit")
    if raw is None:
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = 0
    if not 1 <= value <= high:
        raise _invalid(f"limit must be an integer from 1 to {high}", "limit")
    return value


def page_cursor(params: Mapping[str, Any]) -> int:
    """A position cursor (the `next_cursor` of a page): digits only, 0 when absent."""
    raw = params.get("cursor")
    if raw is None or raw == "":
        return 0
    text = str(raw)
    if not text.isdigit() or len(text) > CURSOR_DIGITS_MAX:
        raise GatewayError("invalid_cursor", "cursor is not from next_cursor", param="cursor")
    return int(text)


def time_window(params: Mapping[str, Any]) -> dict[str, Any]:
    """`since` and `until` (ISO 8601 with a zone), `since` not after `until`."""
    since, until = parse_time(params, "since"), parse_time(params, "until")
    if since is not None and until is not None and since > until:
        raise _invalid("since must not be after until", "since")
    return {"since": since, "until": until}


def audit_filters(params: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for projections.queries.list_audit, or a 400 naming the filter."""
    raw_limit = params.get("limit", queries.AUDIT_PAGE_DEFAULT)
    try:
        limit = int(raw_limit)
    except (TypeError, ValueError):
        raise _invalid("limit must be an integer", "limit") from None
    status = params.get("status")
    if status is not None and status not in AUDIT_STATUSES:
        raise _invalid(f"status must be one of {', '.join(sorted(AUDIT_STATUSES))}", "status")
    model = params.get("model")
    if model is not None and not (isinstance(model, str) and MODEL_SYNTAX.fullmatch(model)):
        raise _invalid("model must be a model name: letters, digits and . _ : / @ - only", "model")
    actor_id = params.get("actor_id")
    if actor_id is not None:
        if not isinstance(actor_id, str):
            raise _invalid("actor_id must be a string", "actor_id")
        check_text(actor_id, "actor_id", USER_ID_CHARS_MAX)
    ids = {}
    for name in ("conversation_id", "trace_id"):
        value = params.get(name)
        ids[name] = None if value is None else check_id(value, name)
    key_id = params.get("key_id")
    if key_id is not None:
        try:
            key_id = str(UUID(str(key_id)))
        except ValueError:
            raise _invalid("key_id must be an API key id (a UUID)", "key_id") from None
    provider = params.get("provider")
    if provider is not None and not (
        isinstance(provider, str) and PROVIDER_SYNTAX.fullmatch(provider)
    ):
        raise _invalid(
            "provider must be a provider name: lowercase letters, digits, _ and -", "provider"
        )
    order = params.get("order")
    if order is not None and order not in queries.AUDIT_ORDERS:
        raise _invalid(f"order must be one of {', '.join(queries.AUDIT_ORDERS)}", "order")
    cursor = params.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise GatewayError("invalid_cursor", "cursor is not from next_cursor", param="cursor")
    return {
        "actor_id": actor_id,
        "model": model,
        "status": status,
        "key_id": key_id,
        "provider": provider,
        "order": order,
        "since": parse_time(params, "since"),
        "until": parse_time(params, "until"),
        "cursor": cursor,
        "limit": limit,
        **ids,
    }


def search_audit(store: Any, project_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """One page of the project's audit records (the REST read and the MCP tool)."""
    filters = audit_filters(params)
    try:
        return queries.list_audit(store, project_id=project_id, **filters)
    except queries.InvalidCursor as error:
        raise GatewayError("invalid_cursor", str(error), param="cursor") from None


REQUEST_ID_CHARS_MAX = 100


def request_record(services: Any, project_id: str, request_id: str) -> dict[str, Any]:
    """One request's audit record with its pricing provenance and its path (transitions,
    route, attempts): GET /v1/data/audit/{id} and the MCP tool get_request. Another
    project's request is "no such request", as one that does not exist."""

    if (
        not isinstance(request_id, str)
        or not request_id.startswith(REQUEST_ID_PREFIX)
        or len(request_id) > REQUEST_ID_CHARS_MAX
    ):
        raise GatewayError("request_not_found", "no such request", param="request_id")
    record, position = queries.get_audit(services.store, request_id)
    if record is None or record.get("project_id") != project_id:
        raise GatewayError(
            "request_not_found", "no such request in this project", param="request_id"
        )
    pricing = record.get("pricing") or {}
    pricing.update(  # which events set the price and rate: the provenance
        ledger_queries.pricing_events(
            services.store, price_id=pricing.get("price_id"), fx_rate_id=pricing.get("fx_rate_id")
        )
    )
    history = request_history(services.app, request_id)
    return {**record, **history, "as_of_position": position}


def balance_read(services: Any, project_id: str, mode: str) -> dict[str, Any]:
    """The project's live or test balance (GET /v1/billing/balance, the MCP tool
    get_balance)."""
    result = queries.get_balance(services.store, project_id, mode)
    if result is None:
        raise GatewayError("project_not_found", "no balance for this project yet")
    return result


async def routing_scope(services: Any, project: Any, compliance: str | None) -> tuple[Any, Any]:
    """(effective tier, catalog) of a project: its tier, optionally tightened by
    `compliance`, and the catalog with its own custom models."""

    effective = effective_tier(project.tier, compliance, plan=project.plan)
    return effective, await services.routing.project_catalog(project.id, services.cache.get)


async def models_listing_read(
    services: Any, project: Any, compliance: str | None = None
) -> dict[str, Any]:
    """GET /v1/models and the MCP tool list_models."""

    effective, catalog = await routing_scope(services, project, compliance)
    return models_listing(catalog, effective, services.clock.now())


__all__ = [
    "page_cursor",
    "page_limit",
    "time_window",
    "balance_read",
    "models_listing_read",
    "request_record",
    "routing_scope",
    "AUDIT_FILTERS",
    "AUDIT_STATUSES",
    "audit_filters",
    "parse_time",
    "search_audit",
]
