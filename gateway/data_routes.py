"""The data API of issue 12 for SIEMs and dashboards: `/v1/data/routing`, `/v1/data/pii`,
`/v1/data/models`, `/v1/data/events` (NDJSON), and the price history of
`/v1/data/pricing?history=true` (gateway/ledger_routes.py). Read-only, API-key auth scoped to
the key's project (or the admin token with `?project_id=`), `min_position` like every
read, `since`/`until` everywhere, a position cursor; a bad filter is a recorded 400.

Each read is one function of (services, project id, parameters) so the MCP tools
(gateway/mcp_server.py) return exactly what the REST twin does.

Registered by gateway/app.py (`register_data_routes`), reusing its auth, read-your-writes
and error helpers.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio.to_thread
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from gateway.bootstrap import Services
from gateway.data_filters import parse_time
from gateway.errors import GatewayError
from gateway.jsonable import jsonable
from gateway.responses import JsonResponse
from gateway.validation import MODEL_SYNTAX
from projections import data_queries
from projections.project_events import EVENTS_PAGE_DEFAULT, EVENTS_PAGE_MAX, list_project_events

CURSOR_DIGITS_MAX = 19
EVENT_TYPE_SYNTAX = re.compile(r"[A-Z][A-Za-z]{0,63}\.[A-Z][A-Za-z]{0,63}")
EVENT_TYPES_MAX = 20


def _invalid(message: str, param: str) -> GatewayError:
    return GatewayError("invalid_request", message, param=param)


def _limit(params: Mapping[str, Any], default: int, high: int) -> int:
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


def _cursor(params: Mapping[str, Any]) -> int:
    raw = params.get("cursor")
    if raw is None or raw == "":
        return 0
    text = str(raw)
    if not text.isdigit() or len(text) > CURSOR_DIGITS_MAX:
        raise GatewayError("invalid_cursor", "cursor is not from next_cursor", param="cursor")
    return int(text)


def _window(params: Mapping[str, Any]) -> dict[str, Any]:
    since, until = parse_time(params, "since"), parse_time(params, "until")
    if since is not None and until is not None and since > until:
        raise _invalid("since must not be after until", "since")
    return {"since": since, "until": until}


def _model(params: Mapping[str, Any]) -> str | None:
    model = params.get("model")
    if model is None:
        return None
    if not isinstance(model, str) or not MODEL_SYNTAX.fullmatch(model):
        raise _invalid("model must be a model name: letters, digits and . _ : / @ - only", "model")
    return model


def routing_read(services: Services, project_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
    result = data_queries.route_decisions(
        services.store,
        project_id=project_id,
        after=_cursor(params),
        limit=_limit(params, data_queries.PAGE_DEFAULT, data_queries.PAGE_MAX),
        **_window(params),
    )
    touched = {a["endpoint"] for row in result["data"] for a in row["attempts"]}
    return result | {"breakers": _breakers(services, touched)}


def _breakers(services: Services, endpoints: set[str]) -> list[dict[str, Any]]:
    """The breaker state now, as the router holds it, of the endpoints this project's own
    requests used (never another project's endpoint)."""
    return [
        jsonable(dict(snapshot))
        for snapshot in services.routing.router.board.snapshot()
        if snapshot.get("endpoint") in endpoints
    ]


def pii_read(services: Services, project_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
    return data_queries.pii_decisions(
        services.store,
        project_id=project_id,
        after=_cursor(params),
        limit=_limit(params, data_queries.PAGE_DEFAULT, data_queries.PAGE_MAX),
        **_window(params),
    )


def models_read(services: Services, project_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
    result = data_queries.model_health(
        services.store, project_id=project_id, model=_model(params), **_window(params)
    )
    touched = {row["endpoint"] for row in result["data"]}
    states = {str(b.get("endpoint")): b.get("state") for b in _breakers(services, touched)}
    for row in result["data"]:
        row["breaker_state"] = states.get(row["endpoint"], "closed")
    return result


def events_read(services: Services, project_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
    raw_types = params.get("type")
    types: tuple[str, ...] = ()
    if raw_types is not None:
        types = tuple(t.strip() for t in str(raw_types).split(",") if t.strip())
        if (
            not types
            or len(types) > EVENT_TYPES_MAX
            or not all(EVENT_TYPE_SYNTAX.fullmatch(t) for t in types)
        ):
            raise _invalid(
                f"type must list up to {EVENT_TYPES_MAX} event types like Request.Completed",
                "type",
            )
    return list_project_events(
        services.store,
        project_id=project_id,
        after=_cursor(params),
        limit=_limit(params, EVENTS_PAGE_DEFAULT, EVENTS_PAGE_MAX),
        types=types,
        **_window(params),
    )


def register_data_routes(
    app: FastAPI,
    services: Services,
    *,
    project_of: Callable[[Request], Awaitable[str]],
    wait_for: Callable[[Request], Awaitable[None]],
    read_error: Callable[[Request, BaseException], Awaitable[Response]],
) -> None:
    def json_read(read: Callable[[Services, str, Mapping[str, Any]], dict[str, Any]]) -> Any:
        async def handler(request: Request) -> Response:
            try:
                project_id = await project_of(request)
                await wait_for(request)
                params = dict(request.query_params)
                result = await anyio.to_thread.run_sync(lambda: read(services, project_id, params))
                return JsonResponse(result)
            except Exception as error:
                return await read_error(request, error)

        return handler

    app.add_api_route("/v1/data/routing", json_read(routing_read), methods=["GET"])
    app.add_api_route("/v1/data/pii", json_read(pii_read), methods=["GET"])
    app.add_api_route("/v1/data/models", json_read(models_read), methods=["GET"])

    @app.get("/v1/data/events")
    async def data_events(request: Request) -> Response:
        """NDJSON, one event a line in log order; `X-LG-Next-Cursor` continues after the
        last line (absent on the last page), `X-LG-As-Of-Position` says how far it is."""
        try:
            project_id = await project_of(request)
            await wait_for(request)
            params = dict(request.query_params)
            result = await anyio.to_thread.run_sync(
                lambda: events_read(services, project_id, params)
            )
            body = b"".join(orjson.dumps(event) + b"\n" for event in result["data"])
            headers = {"X-LG-As-Of-Position": str(result["as_of_position"])}
            if result["next_cursor"] is not None:
                headers["X-LG-Next-Cursor"] = result["next_cursor"]
            return Response(body, media_type="application/x-ndjson", headers=headers)
        except Exception as error:
            return await read_error(request, error)


__all__ = [
    "events_read",
    "models_read",
    "pii_read",
    "register_data_routes",
    "routing_read",
]
