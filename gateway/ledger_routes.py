"""Routes of the ledger half of issue 5: usage and pricing reads, the plan/quota read, and
the admin twins of `ledgergate project set-plan|set-tier|set-fee` and `provider-key set`.

Registered by gateway/app.py (`register_ledger_routes`), reusing its auth, read-your-writes
and admin helpers so every route answers errors in the same envelope.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, date
from typing import Any
from uuid import UUID

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import Response

from domain import commands as c
from domain.clock import parse_instant
from domain.handlers import plan_view
from domain.ids import account_id
from domain.money import check_currency, to_decimal
from gateway.auth import authenticate_key
from gateway.bootstrap import Services
from gateway.byok import set_provider_key_command
from gateway.errors import GatewayError
from gateway.read_scope import read_project
from gateway.responses import JsonResponse
from gateway.routing.balancer import owning_project
from gateway.validation import MODEL_SYNTAX
from projections import data_queries, ledger_queries

MODEL_CHARS_MAX = 200


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


def register_ledger_routes(
    app: FastAPI,
    services: Services,
    *,
    project_of: Callable[[Request], Awaitable[str]],
    wait_for: Callable[[Request], Awaitable[None]],
    admin: Callable[[Request, Any], Awaitable[Response]],
    read_error: Callable[[Request, BaseException], Awaitable[Response]],
) -> None:
    @app.get("/v1/billing/usage")
    async def billing_usage(request: Request) -> Response:
        try:
            project_id = await project_of(request)
            await wait_for(request)
            params = dict(request.query_params)
            result = await anyio.to_thread.run_sync(
                lambda: usage_read(services, project_id, params)
            )
            return JsonResponse(result)
        except Exception as error:
            return await read_error(request, error)

    @app.get("/v1/billing/plan")
    async def billing_plan(request: Request) -> Response:
        """The plan in force now (a trial turns Pro by the clock), this month's admitted
        requests and when the quota resets, read from the Account (the quota's home)."""
        try:
            project = await read_project(services.cache, services.settings.admin_token, request)
            account = await anyio.to_thread.run_sync(
                services.cache.get_sync, account_id(project.id)
            )
            return JsonResponse(
                {"object": "plan", **plan_view(project, account, services.clock.now())}
            )
        except Exception as error:
            return await read_error(request, error)

    @app.get("/v1/data/pricing")
    async def data_pricing(request: Request) -> Response:
        try:
            _, project = await authenticate_key(
                services.cache, request.headers.get("authorization")
            )
            await wait_for(request)
            return JsonResponse(await pricing_read(services, project, dict(request.query_params)))
        except Exception as error:
            return await read_error(request, error)

    # --- admin twins of the CLI -----------------------------------------------------------

    @app.post("/v1/admin/projects/{project_id}/plan")
    async def admin_set_plan(request: Request, project_id: str) -> Response:
        return await admin(
            request, lambda b: c.SetPlan(project_id=UUID(project_id), plan=str(b["plan"]))
        )

    @app.post("/v1/admin/projects/{project_id}/tier")
    async def admin_set_tier(request: Request, project_id: str) -> Response:
        return await admin(
            request, lambda b: c.SetTier(project_id=UUID(project_id), tier=str(b["tier"]))
        )

    @app.post("/v1/admin/projects/{project_id}/fee")
    async def admin_set_fee(request: Request, project_id: str) -> Response:
        return await admin(
            request,
            lambda b: c.SetFeeRate(project_id=UUID(project_id), fee_rate=to_decimal(b["fee_rate"])),
        )

    @app.post("/v1/admin/projects/{project_id}/provider-keys")
    async def admin_set_provider_key(request: Request, project_id: str) -> Response:
        # The body's api_key is encrypted before a command exists; it is never echoed.
        return await admin(
            request,
            lambda b: set_provider_key_command(
                services.settings.raw, UUID(project_id), str(b["provider"]), str(b["api_key"])
            ),
        )


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


async def pricing_read(
    services: Services, project: Any, params: Mapping[str, Any]
) -> dict[str, Any]:
    """The price (and FX rate) in effect for a model at an instant, or with `history=true`
    every effective-dated price of the model and every FX rate into the currency (GET
    /v1/data/pricing and the MCP tool get_pricing). Only models this project can see: the
    shipped catalog and its own custom models, priced from its own book."""
    model = str(params.get("model") or "").strip()
    if not model or len(model) > MODEL_CHARS_MAX:
        raise GatewayError("invalid_request", "model is required", param="model")
    if not MODEL_SYNTAX.fullmatch(model):
        raise GatewayError(
            "invalid_request",
            "model must be a model name: letters, digits and . _ : / @ - only",
            param="model",
        )
    raw_history = params.get("history", False)
    history_text = str(raw_history).lower()
    if history_text not in ("true", "false", "1", "0"):
        raise GatewayError("invalid_request", "history must be true or false", param="history")
    history = history_text in ("true", "1")
    raw_at = params.get("at")
    if history and raw_at is not None:
        raise GatewayError("invalid_request", "at and history=true exclude each other", param="at")
    try:
        at = parse_instant(str(raw_at)) if raw_at else services.clock.now()
    except ValueError:
        raise GatewayError(
            "invalid_request", "at must be an ISO 8601 instant with a timezone", param="at"
        ) from None
    currency = check_currency(str(params.get("currency") or project.currency))
    project_routing = await services.routing.project_routing.get(project.id, services.cache.get)
    spec = services.routing.catalog_for(project_routing).get(model)
    owner = None if spec is None else owning_project(spec)
    if spec is not None and history:
        found = await anyio.to_thread.run_sync(
            lambda: data_queries.pricing_history(
                services.store, model=spec.name, currency=currency, project_id=owner
            )
        )
        if found["prices"]:
            return found
    result = (
        None
        if spec is None or history
        else await anyio.to_thread.run_sync(
            lambda: ledger_queries.pricing_at(
                services.store, model=spec.name, at=at, currency=currency, project_id=owner
            )
        )
    )
    if result is None or result["price"] is None:
        raise GatewayError(
            "price_not_found",
            f"no price was ever set for {model!r}"
            if history
            else f"no price was in effect for {model!r} at {at.isoformat()}",
            param="model",
        )
    return result


def _request_id() -> str:
    from domain.ids import new_request_id

    return new_request_id()


__all__ = ["register_ledger_routes", "parse_day"]
