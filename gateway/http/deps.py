"""FastAPI dependencies every surface shares: the services, who the caller is (an API key's
project, or the admin token), and read-your-writes waiting (`min_position`).

Each is a plain async function of the request, usable as `Depends(...)` and callable
directly where a route must keep an order of checks (which error a request with two
mistakes answers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, Request
from fastapi.responses import Response

from domain.project import Project
from gateway.bootstrap import Services
from gateway.errors import GatewayError
from gateway.read_scope import read_project, require_admin
from gateway.responses import JsonResponse

READ_WAIT_S_MAX = 10.0
POSITION_MAX = 2**63 - 1  # a log position is a BIGINT
# How far past the log's head a min_position may be: none. Every position a client holds
# came from a committed write, so the store's head already includes it.
MIN_POSITION_AHEAD_OF_HEAD_MAX = 0


def services_of(request: Request) -> Services:
    """The services `create_app` built once at start-up (app.state.services)."""
    services: Services = request.app.state.services
    return services


async def _services(request: Request) -> Services:
    """`services_of` as a dependency. Async on purpose: FastAPI runs a plain `def`
    dependency in its thread pool, a thread hand-off (and GIL contention) on every request
    of every route for one attribute read."""
    return services_of(request)


ServicesDep = Annotated[Services, Depends(_services)]


async def caller_project(request: Request) -> Project:
    """A key's own project, or the admin token's `?project_id=` (gateway/read_scope.py)."""
    services = services_of(request)
    return await read_project(services.cache, services.settings.admin_token, request)


async def caller_project_id(request: Request) -> str:
    return str((await caller_project(request)).id)


async def admin_only(request: Request) -> None:
    """The admin API's gate (403 when off, 401 without the token)."""
    require_admin(services_of(request).settings.admin_token, request.headers.get("authorization"))


async def wait_for_min_position(request: Request) -> None:
    """Read-your-writes: with `?min_position=N`, answer only once the read models have
    reached N (a 503 `min_position_not_reached` after READ_WAIT_S_MAX), and refuse a
    position past the log's head (400) instead of waiting for it."""
    raw = request.query_params.get("min_position")
    if raw is None:
        return
    try:
        position = int(raw)
    except ValueError:
        position = -1
    if not 0 <= position <= POSITION_MAX:
        raise GatewayError(
            "invalid_request",
            f"min_position must be an integer from 0 to {POSITION_MAX}",
            param="min_position",
        )
    services = services_of(request)
    await _require_existing_position(services, position)
    # On the event loop: a waiting read holds no worker thread, however many there are.
    reached = await services.runner.wait_for_async(position, READ_WAIT_S_MAX)
    if not reached:
        # Never a 200 with data older than the client asked for: a retryable 503 that
        # says how far the views are.
        raise GatewayError(
            "min_position_not_reached",
            f"the read models have not reached position {position} within "
            f"{READ_WAIT_S_MAX:g} s; retry later",
            param="min_position",
            extra={
                "min_position": position,
                "as_of_position": services.runner.views_position_known(),
            },
            headers={"Retry-After": "1"},
        )


async def _require_existing_position(services: Services, position: int) -> None:
    """A position past the log's head names no write anyone has made: refuse it (400)
    instead of waiting for it. The store is asked only when the position is past what
    this process already knows to exist."""
    runner = services.runner
    known = max(runner.follow_position or 0, runner.position, services.writer.last_position)
    if position <= known + MIN_POSITION_AHEAD_OF_HEAD_MAX:
        return
    head = await anyio.to_thread.run_sync(services.app.recorder.max_notification_id)
    if position > (head or 0) + MIN_POSITION_AHEAD_OF_HEAD_MAX:
        raise GatewayError(
            "invalid_request",
            "min_position is beyond the end of the event log: pass a position this "
            "gateway returned (X-LG-Ledger-Position, as_of_position)",
            param="min_position",
        )


# The common read: whose data (first), then wait for the position asked for.
ProjectId = Annotated[str, Depends(caller_project_id)]
CallerProject = Annotated[Project, Depends(caller_project)]
AdminOnly = Depends(admin_only)
# A parameter after the caller's: FastAPI solves dependencies in parameter order (route
# `dependencies=[...]` would run first and answer a bad position before a missing key).
Waited = Annotated[None, Depends(wait_for_min_position)]


def project_read_route(read: Callable[[Services, str, Mapping[str, Any]], dict[str, Any]]) -> Any:
    """A GET route answering `read(services, project id, query parameters)` as JSON, after
    the caller's project and the position it waits for; the read runs in a worker thread."""

    async def handler(
        request: Request, services: ServicesDep, project_id: ProjectId, _waited: Waited
    ) -> Response:
        params = dict(request.query_params)
        result = await anyio.to_thread.run_sync(lambda: read(services, project_id, params))
        return JsonResponse(result)

    return handler


__all__ = [
    "AdminOnly",
    "CallerProject",
    "MIN_POSITION_AHEAD_OF_HEAD_MAX",
    "POSITION_MAX",
    "ProjectId",
    "READ_WAIT_S_MAX",
    "ServicesDep",
    "Waited",
    "admin_only",
    "caller_project",
    "caller_project_id",
    "project_read_route",
    "services_of",
    "wait_for_min_position",
]
