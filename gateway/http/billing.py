"""The billing reads: a project's balance, usage and plan, and (for finance, with the admin
token) the reconciliations of provider costs against provider invoices."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response

from domain.clock import parse_instant
from domain.handlers import plan_view
from domain.ids import MODE_LIVE, account_id, key_mode
from gateway.bootstrap import Services
from gateway.data_filters import balance_read
from gateway.errors import GatewayError, uuid_or_refuse
from gateway.http.deps import (
    AdminOnly,
    CallerProject,
    ProjectId,
    ServicesDep,
    Waited,
    project_read_route,
)
from gateway.read_scope import is_admin_token
from gateway.responses import JsonResponse
from projections import ledger_queries
from projections.ledger_entries import (
    RECONCILIATIONS_PAGE_DEFAULT,
    get_reconciliation,
    list_reconciliations,
)

RECONCILIATION_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
TRUE_WORDS = ("1", "true", "yes")

router = APIRouter()


def parse_day(raw: str | None, name: str) -> date | None:
    """A UTC day: YYYY-MM-DD, or an ISO 8601 instant (its UTC day)."""
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        return parse_instant(text).astimezone(UTC).date()
    except ValueError:
        raise GatewayError(
            "invalid_request",
            f"{name} must be a day (YYYY-MM-DD) or an ISO 8601 instant with a timezone",
            param=name,
        ) from None


def usage_read(services: Services, project_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The project's usage (GET /v1/billing/usage and the MCP tool get_usage)."""
    today = services.clock.now().astimezone(UTC).date()
    since = parse_day(params.get("since"), "since") or today.replace(day=1)
    until = parse_day(params.get("until"), "until") or today
    try:
        group_by = ledger_queries.parse_group_by(params.get("group_by"))
        return ledger_queries.usage(
            services.store, project_id=project_id, group_by=group_by, since=since, until=until
        )
    except ledger_queries.UsageQueryError as error:
        raise GatewayError("invalid_request", str(error), param=error.param) from None


@router.get("/v1/billing/balance")
async def balance(
    request: Request, services: ServicesDep, project_id: ProjectId, _waited: Waited
) -> Response:
    # A test key reads its project's test balance (test mode); a live key and the admin
    # token read the live one.
    authorization = request.headers.get("authorization") or ""
    presented = authorization.partition(" ")[2].strip()
    admin = is_admin_token(services.settings.admin_token, authorization)
    mode = MODE_LIVE if admin else key_mode(presented)
    result = await anyio.to_thread.run_sync(balance_read, services, project_id, mode)
    return JsonResponse(result)


router.add_api_route(
    "/v1/billing/usage", project_read_route(usage_read), methods=["GET"], name="billing_usage"
)


@router.get("/v1/billing/plan")
async def billing_plan(services: ServicesDep, project: CallerProject) -> Response:
    """The plan in force now (a trial turns Pro by the clock), this month's admitted
    requests and when the quota resets, read from the Account (the quota's home)."""
    account = await anyio.to_thread.run_sync(services.cache.get_sync, account_id(project.id))
    return JsonResponse({"object": "plan", **plan_view(project, account, services.clock.now())})


# Reconciliations compare the platform's provider costs with provider invoices: a finance
# (admin) concern, not a project's, so they need the admin token.
@router.get("/v1/billing/reconciliations", dependencies=[AdminOnly])
async def reconciliations_list(
    request: Request, services: ServicesDep, _waited: Waited
) -> Response:
    params = request.query_params
    try:
        limit = int(params.get("limit", RECONCILIATIONS_PAGE_DEFAULT))
    except ValueError:
        raise GatewayError("invalid_request", "limit must be an integer", param="limit") from None
    month = params.get("month")
    if month is not None and not RECONCILIATION_MONTH.fullmatch(month):
        raise GatewayError("invalid_request", "month must be YYYY-MM", param="month")
    provider = params.get("provider")
    lines = params.get("lines", "false").lower() in TRUE_WORDS
    result = await anyio.to_thread.run_sync(
        lambda: list_reconciliations(
            services.store,
            provider=provider.strip().lower() if provider else None,
            month=month,
            limit=limit,
            with_lines=lines,
        )
    )
    return JsonResponse(result)


@router.get("/v1/billing/reconciliations/{reconciliation_id}", dependencies=[AdminOnly])
async def reconciliation_get(
    services: ServicesDep, _waited: Waited, reconciliation_id: str
) -> Response:
    identity = str(
        uuid_or_refuse(
            reconciliation_id, "reconciliation_not_found", "no such reconciliation", "id"
        )
    )
    record, position = await anyio.to_thread.run_sync(get_reconciliation, services.store, identity)
    if record is None:
        raise GatewayError("reconciliation_not_found", "no such reconciliation", param="id")
    return JsonResponse({**record, "as_of_position": position})


__all__ = ["parse_day", "router", "usage_read"]
