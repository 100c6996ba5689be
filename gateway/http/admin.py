"""The admin API (every `/v1/admin/*`): the HTTP twins of the `ledgergate` admin commands,
and the operator's reads (dead letters, authentication failures).

Every route needs the admin token (the router's dependency, checked first). A write parses
the JSON body, refuses text storage cannot hold, builds its command with the same builder
the CLI uses (gateway/admin_commands.py) and answers the command's outcome with the log
position it was written at (`X-LG-Ledger-Position`) for read-your-writes.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response

from domain.commands import Command
from domain.routing import ProjectRouting
from gateway import admin_commands as build
from gateway.bootstrap import Services
from gateway.data_filters import parse_time
from gateway.errors import GatewayError, uuid_or_refuse
from gateway.http.deps import AdminOnly, ServicesDep, Waited
from gateway.jsonable import jsonable
from gateway.responses import JsonResponse
from gateway.validation import ADMIN_STRING_CHARS_MAX, check_body_strings, parse_json_body
from projections.auth_failures import (
    AUTH_FAILURE_CODES,
    AUTH_FAILURES_PAGE_DEFAULT,
    AUTH_FAILURES_PAGE_MAX,
    GROUP_COLUMNS,
    list_auth_failures,
)
from projections.runner import DEAD_LETTERS_PAGE_MAX, list_dead_letters

DEAD_LETTERS_PAGE_DEFAULT = 100
CLIENT_IP_CHARS_MAX = 64
CURSOR_DIGITS_MAX = 19

router = APIRouter(prefix="/v1/admin", dependencies=[AdminOnly])

Body = dict[str, Any]


async def execute(
    request: Request,
    services: Services,
    command_of: Callable[[Body], Command | Awaitable[Command]],
) -> Response:
    """Parse the body, build the command (a builder may read state first), execute it: the
    one write path of the admin API."""
    body = parse_json_body(await request.body())
    check_body_strings(body, chars_max=ADMIN_STRING_CHARS_MAX)
    try:
        command = command_of(body)
        if inspect.isawaitable(command):
            command = await command
        outcome = await services.writer.execute_async(command)
    except (KeyError, TypeError, ValueError) as error:  # a missing or malformed field
        raise build.admin_input_error(error) from None
    return JsonResponse(
        jsonable(outcome.value),
        status_code=200,
        headers={"X-LG-Ledger-Position": str(outcome.position or 0)},
    )


def _invalidate_routing(services: Services, project_id: str) -> None:
    try:
        services.routing.project_routing.invalidate(UUID(project_id))
    except ValueError:  # a malformed id was already answered with a 400
        pass


def bounded_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise GatewayError(
            "invalid_request", f"{name} must be an integer from {low} to {high}", param=name
        )
    return value


# --- the twins of `ledgergate project|key|topup|price|model|endpoint|fx|provider-key` ---------


@router.post("/projects")
async def admin_project(request: Request, services: ServicesDep) -> Response:
    secret = services.settings.actor_token_secret
    return await execute(request, services, lambda b: build.create_project(secret, b))


@router.post("/keys")
async def admin_key(request: Request, services: ServicesDep) -> Response:
    return await execute(request, services, build.create_key)


@router.post("/keys/{key_id}/revoke")
async def admin_revoke(request: Request, services: ServicesDep, key_id: str) -> Response:
    return await execute(request, services, lambda b: build.revoke_key(key_id, b))


@router.post("/keys/{key_id}/downgrade-threshold")
async def admin_downgrade_threshold(
    request: Request, services: ServicesDep, key_id: str
) -> Response:
    return await execute(request, services, lambda b: build.set_key_downgrade_threshold(key_id, b))


@router.post("/topups")
async def admin_topup(request: Request, services: ServicesDep) -> Response:
    return await execute(request, services, build.top_up)


@router.post("/prices")
async def admin_price(request: Request, services: ServicesDep) -> Response:
    async def price_command(body: Body) -> Command:
        project_id = build.price_project_id(body)
        routing = None
        if project_id is not None:  # a custom model's price: that project's models
            found = await services.cache.get(ProjectRouting.create_id(str(project_id)))
            routing = found if isinstance(found, ProjectRouting) else None
        return build.set_price(services.routing.catalog, routing, body)

    return await execute(request, services, price_command)


@router.post("/projects/{project_id}/models")
async def admin_custom_model(request: Request, services: ServicesDep, project_id: str) -> Response:
    response = await execute(request, services, lambda b: build.add_custom_model(project_id, b))
    _invalidate_routing(services, project_id)
    return response


@router.post("/projects/{project_id}/endpoints")
async def admin_custom_endpoint(
    request: Request, services: ServicesDep, project_id: str
) -> Response:
    response = await execute(request, services, lambda b: build.add_custom_endpoint(project_id, b))
    _invalidate_routing(services, project_id)
    return response


@router.post("/fx-rates")
async def admin_fx(request: Request, services: ServicesDep) -> Response:
    return await execute(request, services, build.set_fx_rate)


# The admin twins of `ledgergate project set-plan|set-tier|set-fee`: one route each.
PROJECT_SETTERS: dict[str, Callable[[Any, Body], Command]] = {
    "plan": build.set_plan,
    "tier": build.set_tier,
    "fee": build.set_fee_rate,
}


def _project_setter_route(setter: Callable[[Any, Body], Command]) -> Any:
    async def handler(request: Request, services: ServicesDep, project_id: str) -> Response:
        return await execute(request, services, lambda b: setter(project_id, b))

    return handler


for _setting, _setter in PROJECT_SETTERS.items():
    router.add_api_route(
        f"/projects/{{project_id}}/{_setting}",
        _project_setter_route(_setter),
        methods=["POST"],
        name=f"admin_set_{_setting}",
    )


@router.post("/projects/{project_id}/provider-keys")
async def admin_set_provider_key(
    request: Request, services: ServicesDep, project_id: str
) -> Response:
    # The body's api_key is encrypted before a command exists; it is never echoed.
    settings = services.settings
    return await execute(
        request, services, lambda b: build.set_provider_key(settings, project_id, b)
    )


# --- the operator's reads ----------------------------------------------------------------------


@router.get("/projections/dead-letters")
async def admin_dead_letters(request: Request, services: ServicesDep) -> Response:
    view = request.query_params.get("view")
    if view is not None and view not in {v.name for v in services.runner.views}:
        raise GatewayError("invalid_request", "view must name a read model", param="view")
    limit = bounded_int(request, "limit", DEAD_LETTERS_PAGE_DEFAULT, 1, DEAD_LETTERS_PAGE_MAX)
    rows = await anyio.to_thread.run_sync(
        lambda: list_dead_letters(services.store, view=view, limit=limit)
    )
    return JsonResponse({"object": "list", "data": rows})


@router.get("/auth-failures")
async def admin_auth_failures(request: Request, services: ServicesDep, _waited: Waited) -> Response:
    """Who failed to authenticate (the presented key's id, never the key), from where,
    when and how often: rows newest first, or counts with `group_by`."""
    params = request.query_params
    error_code = params.get("error_code")
    if error_code is not None and error_code not in AUTH_FAILURE_CODES:
        raise GatewayError(
            "invalid_request",
            f"error_code must be one of {', '.join(AUTH_FAILURE_CODES)}",
            param="error_code",
        )
    raw_group = params.get("group_by")
    group_by = tuple(g.strip() for g in raw_group.split(",")) if raw_group else ()
    if any(g not in GROUP_COLUMNS for g in group_by) or len(set(group_by)) < len(group_by):
        raise GatewayError(
            "invalid_request",
            f"group_by must list some of {', '.join(GROUP_COLUMNS)}",
            param="group_by",
        )
    key_fingerprint = params.get("key_fingerprint")
    if key_fingerprint is not None:
        key_fingerprint = str(
            uuid_or_refuse(
                key_fingerprint,
                "invalid_request",
                "key_fingerprint must be a key id",
                "key_fingerprint",
            )
        )
    client_ip = params.get("client_ip")
    if client_ip is not None and (
        len(client_ip) > CLIENT_IP_CHARS_MAX or not client_ip.isprintable()
    ):
        raise GatewayError("invalid_request", "client_ip is not an address", param="client_ip")
    raw_cursor = params.get("cursor")
    cursor = None
    if raw_cursor is not None:
        if not raw_cursor.isdigit() or len(raw_cursor) > CURSOR_DIGITS_MAX:
            raise GatewayError("invalid_cursor", "cursor is not from next_cursor", param="cursor")
        cursor = int(raw_cursor)
    limit = bounded_int(request, "limit", AUTH_FAILURES_PAGE_DEFAULT, 1, AUTH_FAILURES_PAGE_MAX)
    since, until = parse_time(params, "since"), parse_time(params, "until")
    result = await anyio.to_thread.run_sync(
        lambda: list_auth_failures(
            services.store,
            since=since,
            until=until,
            client_ip=client_ip,
            key_fingerprint=key_fingerprint,
            error_code=error_code,
            group_by=group_by,
            cursor=cursor,
            limit=limit,
        )
    )
    return JsonResponse(result)


__all__ = ["bounded_int", "execute", "router"]
