"""The MCP server at `POST /v1/mcp` (issue 12): Model Context Protocol, JSON-RPC 2.0 over
the streamable HTTP transport, stateless (every POST stands alone; no session id), built on
the official `mcp` SDK (2.x, `mcp.server.mcpserver`).

Authenticated like every data read: the project's API key as `Authorization: Bearer`. The
HTTP gate refuses a request without a valid key before any JSON-RPC is read (401, the
gateway's error envelope); each tool authenticates the headers of the POST carrying the call
again (a cache hit) and reads that key's project only.

Every tool calls the same function as its REST twin (gateway/data_filters.py,
gateway/http/data.py, gateway/http/billing.py), so it answers the same data. Bad
arguments (a wrong type, a missing field, an unknown tool, a filter the API refuses) are a
JSON-RPC error `-32602` naming the argument, never a 500 and never a tool result.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio.to_thread
from fastapi import FastAPI
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS
from pydantic import Field, ValidationError
from starlette.requests import Request as StarletteRequest
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from domain.ids import key_mode, new_request_id
from gateway.auth import authenticate_key
from gateway.bootstrap import Services
from gateway.data_filters import (
    balance_read,
    models_listing_read,
    request_record,
    search_audit,
)
from gateway.errors import as_gateway_error, error_response
from gateway.http.billing import usage_read
from gateway.http.data import models_read, pricing_read
from gateway.http.traces import trace_tree_read, traces_read

MCP_PATH = "/v1/mcp"
# A JSON-RPC error's `data.code` carries the gateway's own error code (invalid_request, …).
NOT_FOUND_CODES = frozenset(
    {"request_not_found", "price_not_found", "project_not_found", "trace_not_found"}
)

Instant = Annotated[
    str | None, Field(description="ISO 8601 instant with a timezone, e.g. 2026-12-01T00:00:00Z")
]


def _rpc_error(error: BaseException) -> MCPError:
    gateway_error = as_gateway_error(error)
    data = {
        "code": gateway_error.code,
        "param": gateway_error.param,
        "status": gateway_error.status,
    }
    if gateway_error.status >= 500 and gateway_error.code not in NOT_FOUND_CODES:
        return MCPError(code=INTERNAL_ERROR, message=gateway_error.message, data=data)
    return MCPError(code=INVALID_PARAMS, message=gateway_error.message, data=data)


class GatewayMCPServer(MCPServer):
    """Argument validation failures become JSON-RPC errors (-32602), not tool results."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except (MCPError, UnexpectedToolError):
            raise
        except ToolError as error:
            cause = error.__cause__
            if isinstance(cause, ValidationError):
                fields = sorted(
                    {".".join(str(p) for p in e["loc"]) or "arguments" for e in cause.errors()}
                )
                raise MCPError(
                    code=INVALID_PARAMS,
                    message=f"invalid arguments for {name}: {', '.join(fields)}",
                    data={"code": "invalid_request", "param": fields[0] if fields else None},
                ) from None
            raise MCPError(code=INVALID_PARAMS, message=str(error)[:200]) from None


def build_mcp_server(services: Services) -> GatewayMCPServer:
    mcp = GatewayMCPServer("ledgergate", version="0.1.0")

    async def principal(ctx: Context) -> tuple[Any, Any]:
        headers = ctx.headers or {}
        try:
            return await authenticate_key(services.cache, headers.get("authorization"))
        except Exception as error:
            raise _rpc_error(error) from None

    async def run(call: Any) -> dict[str, Any]:
        try:
            return dict(await call())
        except MCPError:
            raise
        except Exception as error:
            raise _rpc_error(error) from None

    def in_thread(function: Any, *args: Any) -> Any:
        return lambda: anyio.to_thread.run_sync(lambda: function(*args))

    def present(**values: Any) -> dict[str, Any]:
        return {name: value for name, value in values.items() if value is not None}

    @mcp.tool()
    async def search_audit_logs(
        ctx: Context,
        actor_id: str | None = None,
        model: str | None = None,
        status: str | None = None,
        conversation_id: str | None = None,
        trace_id: str | None = None,
        key_id: str | None = None,
        provider: str | None = None,
        since: Instant = None,
        until: Instant = None,
        order: Annotated[str | None, Field(description="asc or desc")] = None,
        cursor: Annotated[str | None, Field(description="next_cursor of a page")] = None,
        limit: Annotated[int | None, Field(ge=1, le=500)] = None,
    ) -> dict[str, Any]:
        """Search this project's audit log (one record per request), with the filters of
        GET /v1/data/audit. Newest first; a conversation is listed oldest first."""
        _, project = await principal(ctx)
        filters = present(
            actor_id=actor_id, model=model, status=status, conversation_id=conversation_id,
            trace_id=trace_id, key_id=key_id, provider=provider, since=since, until=until,
            order=order, cursor=cursor, limit=limit,
        )  # fmt: skip
        return await run(in_thread(search_audit, services.store, str(project.id), filters))

    @mcp.tool()
    async def get_request(ctx: Context, request_id: str) -> dict[str, Any]:
        """One request's full audit record: model, route, attempts, tokens, cost, pricing
        provenance, PII decision (GET /v1/data/audit/{request_id})."""
        _, project = await principal(ctx)
        return await run(in_thread(request_record, services, str(project.id), request_id))

    @mcp.tool()
    async def list_traces(
        ctx: Context,
        status: Annotated[str | None, Field(description="open, closed or expired")] = None,
        since: Instant = None,
        until: Instant = None,
        cursor: Annotated[str | None, Field(description="next_cursor of a page")] = None,
        limit: Annotated[int | None, Field(ge=1, le=200)] = None,
    ) -> dict[str, Any]:
        """This project's governed traces in the order they were opened, with their
        contract (budget, max depth, allowed models), status and totals (GET
        /v1/data/traces)."""
        _, project = await principal(ctx)
        params = present(status=status, since=since, until=until, cursor=cursor, limit=limit)
        return await run(in_thread(traces_read, services, str(project.id), params))

    @mcp.tool()
    async def get_trace(
        ctx: Context,
        trace_id: Annotated[str, Field(description="lg_tr_ and 32 hex digits")],
        format: Annotated[str | None, Field(description="json (default) or otlp")] = None,
    ) -> dict[str, Any]:
        """One trace's span tree: each span's model, provider, status, tokens, cost and
        timings, with cost, tokens and latency rolled up each subtree; format=otlp gives
        OTLP/JSON (GET /v1/data/traces/{trace_id})."""
        _, project = await principal(ctx)
        params = present(format=format)
        return await run(in_thread(trace_tree_read, services, str(project.id), trace_id, params))

    @mcp.tool()
    async def get_model_health(
        ctx: Context, model: str | None = None, since: Instant = None, until: Instant = None
    ) -> dict[str, Any]:
        """Health per model and endpoint of this project's requests: success rate, latency
        p50/p95, breaker state, last error class (GET /v1/data/models)."""
        _, project = await principal(ctx)
        params = present(model=model, since=since, until=until)
        return await run(in_thread(models_read, services, str(project.id), params))

    @mcp.tool()
    async def get_balance(ctx: Context) -> dict[str, Any]:
        """This project's balance: credits, posted, pending, available (GET
        /v1/billing/balance; a test key reads the test balance)."""
        key, project = await principal(ctx)
        mode = key_mode(key.key_prefix)
        return await run(in_thread(balance_read, services, str(project.id), mode))

    @mcp.tool()
    async def get_usage(
        ctx: Context,
        since: Annotated[str | None, Field(description="a day YYYY-MM-DD")] = None,
        until: Annotated[str | None, Field(description="a day YYYY-MM-DD")] = None,
        group_by: Annotated[
            str | None, Field(description="comma-separated, e.g. model,day")
        ] = None,
    ) -> dict[str, Any]:
        """This project's usage (tokens, requests, cost) in a day range, optionally grouped
        (GET /v1/billing/usage)."""
        _, project = await principal(ctx)
        params = present(since=since, until=until, group_by=group_by)
        return await run(in_thread(usage_read, services, str(project.id), params))

    @mcp.tool()
    async def get_pricing(
        ctx: Context,
        model: str,
        at: Instant = None,
        currency: str | None = None,
        history: bool = False,
    ) -> dict[str, Any]:
        """The price of a model in effect at an instant (default now) with the FX rate into
        the project's currency; with history=true every effective-dated price and FX rate
        (GET /v1/data/pricing)."""
        _, project = await principal(ctx)
        params = present(model=model, at=at, currency=currency, history=str(history).lower())
        return await run(lambda: pricing_read(services, project, params))

    @mcp.tool()
    async def list_models(
        ctx: Context,
        compliance: Annotated[
            str | None, Field(description="a stricter tier to list under, e.g. eu_strict")
        ] = None,
    ) -> dict[str, Any]:
        """The models this project may use, with capabilities, regions and prices (GET
        /v1/models)."""
        _, project = await principal(ctx)
        return await run(lambda: models_listing_read(services, project, compliance))

    return mcp


class KeyGate:
    """ASGI gate in front of the MCP transport: a request to /v1/mcp without a valid API
    key is refused (401, the gateway's envelope) before any JSON-RPC is read."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = StarletteRequest(scope)
            try:
                await authenticate_key(self.services.cache, request.headers.get("authorization"))
            except Exception as error:
                response = error_response(as_gateway_error(error), new_request_id())
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install_mcp(app: FastAPI, services: Services) -> contextlib.AbstractAsyncContextManager[Any]:
    """Mount the MCP endpoint at exactly /v1/mcp; returns what the app's lifespan must
    enter (the SDK's session manager runs the transport's task group)."""
    mcp = build_mcp_server(services)
    starlette_app = mcp.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        json_response=True,
        # Host and Origin are the deployment's concern (a reverse proxy, CORS): the API key
        # is the gate here, as for every other endpoint.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    for route in starlette_app.routes:
        if isinstance(route, Route) and route.path == MCP_PATH:
            app.router.routes.append(
                Route(MCP_PATH, KeyGate(route.app, services), methods=route.methods)
            )

    @contextlib.asynccontextmanager
    async def running() -> AsyncIterator[None]:
        async with mcp.session_manager.run():
            yield

    return running()


__all__ = ["MCP_PATH", "GatewayMCPServer", "build_mcp_server", "install_mcp"]
