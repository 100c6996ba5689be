"""The one exception handler of the HTTP surface, and the request-id / unstorable-URL
middleware.

Routes raise; they never catch. Every expected failure (a GatewayError, a domain error, an
upstream error) reaches `answer_error`, which turns it into the OpenAI envelope with the
status of the one table (gateway/errors.py: STATUS_BY_CODE) and records a project's bad
input (a 400) in its audit log. Anything else is a bug: logged, answered 500.
"""

from __future__ import annotations

import logging
import re
from typing import cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.datastructures import MutableHeaders, QueryParams
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domain.errors import DomainError
from domain.ids import new_request_id
from domain.project import ApiKey, Project
from gateway.auth import authenticate_key
from gateway.errors import GatewayError, as_gateway_error, error_response
from gateway.http.deps import services_of
from gateway.lifecycle.admission import record_rejection
from gateway.lifecycle.request import Intake
from gateway.providers.base import UpstreamError
from gateway.validation import (
    PLAIN_PARAM,
    USER_ID_CHARS_MAX,
    check_text,
    has_unstorable_text,
)

log = logging.getLogger("ledgergate.app")

PLAIN_PATH = re.compile(r"/[A-Za-z0-9/_.\-]{0,100}")
UNKNOWN_PATH = "/v1/unknown"


async def answer_error(request: Request, error: BaseException) -> Response:
    """A failed request's response; bad input from a known project (a bad filter value, a
    bad position) is recorded in its audit log like any other rejection."""
    gateway_error = as_gateway_error(error)
    request_id = new_request_id()
    # Bad input (400) is recorded; a lookup that finds nothing (404) is not: the audit
    # log would otherwise fill with every probe for another project's ids.
    if gateway_error.status == 400 and request.headers.get("authorization"):
        services = services_of(request)
        try:
            principal = await authenticate_key(services.cache, request.headers.get("authorization"))
        except Exception:  # not a project's request (or its key unreadable): nothing to record
            principal = None
        if principal is not None:
            await _record_rejected_request(request, request_id, principal, gateway_error)
    return error_response(gateway_error, request_id)


async def _record_rejected_request(
    request: Request, request_id: str, principal: tuple[ApiKey, Project], error: GatewayError
) -> None:
    services = services_of(request)
    key, project = principal
    ctx = Intake(request_id=request_id, started=0.0, received_at=services.clock.now())
    ctx.project_id, ctx.key_id = project.id, key.id
    ctx.client_ip = request.client.host if request.client else None
    actor = (request.headers.get("x-user-id") or "").strip()
    try:
        ctx.actor_id = check_text(actor, "x-user-id", USER_ID_CHARS_MAX) if actor else None
    except GatewayError:
        ctx.actor_id = None  # an unusable user id is not recorded either
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    if path is None:  # refused before routing (the middleware): the path if it is plain
        path = request.url.path if PLAIN_PATH.fullmatch(request.url.path) else UNKNOWN_PATH
    # What is stored names the code and the field, never the value the client sent.
    stored = GatewayError(
        error.code,
        f"{request.method} {path} refused: {error.code}"
        + (f" (param {error.param})" if error.param else ""),
        status=error.status,
        error_type=error.error_type,
    )
    await record_rejection(services, ctx, stored, endpoint=f"{request.method} {path}")


async def _unexpected_error(request: Request, error: Exception) -> Response:
    log.exception("unhandled error on %s", request.url.path, exc_info=error)
    return error_response(as_gateway_error(error), new_request_id())


async def _http_error(request: Request, raised: Exception) -> Response:
    error = cast(StarletteHTTPException, raised)  # registered for that class only
    unknown = error.status_code in (404, 405)
    code = "unsupported_endpoint" if unknown else "invalid_request"
    message = (
        f"{request.method} {request.url.path} is not an endpoint of this gateway"
        if unknown
        else str(error.detail)
    )
    # A 405 names the methods the path does accept (Starlette puts them in `Allow`); the
    # status is Starlette's (404 or 405), the code is the table's.
    return error_response(
        GatewayError(code, message, status=error.status_code, headers=dict(error.headers or {})),
        new_request_id(),
    )


async def _validation_error(request: Request, raised: Exception) -> Response:
    error = cast(RequestValidationError, raised)  # registered for that class only
    first = error.errors()[0] if error.errors() else {}
    param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
    return error_response(
        GatewayError("invalid_request", str(first.get("msg", "invalid request")), param=param),
        new_request_id(),
    )


def _unstorable_url_part(scope: Scope) -> str | None:
    """The name of the path or query part holding text storage refuses, if any. Read off
    the scope: the decoded path as the routes see it (building `request.url` for it
    parsed the Host header and the whole URL on every request), the query only when
    there is one."""
    if has_unstorable_text(scope.get("root_path", "") + scope["path"]):
        return "path"
    if scope.get("query_string"):
        for name, value in QueryParams(scope["query_string"]).multi_items():
            if has_unstorable_text(name) or has_unstorable_text(value):
                return name if PLAIN_PARAM.fullmatch(name) else "query"
    return None


def request_id_on_every_response(app: ASGIApp) -> ASGIApp:
    """The middleware (pure ASGI: starlette's BaseHTTPMiddleware ran every request through a
    task group and memory streams, a measured share of a request's CPU)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        # A NUL, control character or lone surrogate in the path or a query value would
        # reach SQL parameters (PostgreSQL refuses NUL): refused here, for every route.
        bad = _unstorable_url_part(scope)
        if bad is not None:
            request = Request(scope, receive)
            error = GatewayError(
                "invalid_request",
                f"'{bad}' contains a NUL, a control character or a lone surrogate",
                param=bad,
            )
            response = await answer_error(request, error)
            await response(scope, receive, send)
            return

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if "x-request-id" not in headers:
                    headers["X-Request-Id"] = new_request_id()
            await send(message)

        await app(scope, receive, send_with_request_id)

    return middleware


def install_error_handlers(app: FastAPI) -> None:
    """One handler for every expected error class; Starlette's own HTTP and validation
    errors become the same envelope; anything else is a 500."""
    for expected in (GatewayError, DomainError, UpstreamError):
        app.add_exception_handler(expected, answer_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)


__all__ = ["answer_error", "install_error_handlers", "request_id_on_every_response"]
