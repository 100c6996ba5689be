"""The FastAPI application: one OpenAI-compatible surface plus the read and admin APIs."""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from domain import commands as c
from domain.clock import parse_instant
from domain.errors import InvalidAmount
from domain.ids import MODE_LIVE, key_mode, new_request_id
from domain.money import to_decimal
from domain.request import NON_TERMINAL_STATES, TERMINAL_STATES
from domain.routing import ProjectRouting
from gateway.admin_checks import check_strict_project, price_model
from gateway.auth import authenticate_key
from gateway.bootstrap import Services, build_services
from gateway.chat import Context, chat_completions, record_rejection
from gateway.config import Settings
from gateway.data_filters import balance_read, request_record
from gateway.embeddings import embeddings
from gateway.errors import GatewayError, as_gateway_error, error_response
from gateway.fairness import ProjectConcurrencyMiddleware
from gateway.jsonable import jsonable
from gateway.observability import install as install_observability
from gateway.openapi import install_openapi
from gateway.pii.service import pii_service
from gateway.read_scope import is_admin_token, read_project
from gateway.read_scope import require_admin as admin_gate
from gateway.responses import JsonResponse
from gateway.settlement import request_leases
from gateway.unsupported import install_unsupported_routes
from gateway.validation import (
    ADMIN_STRING_CHARS_MAX,
    PLAIN_PARAM,
    USER_ID_CHARS_MAX,
    check_body_strings,
    check_text,
    has_unstorable_text,
    parse_json_body,
)
from projections.ledger_entries import (
    RECONCILIATIONS_PAGE_DEFAULT,
    get_reconciliation,
    list_reconciliations,
)

log = logging.getLogger("ledgergate.app")

READ_WAIT_S_MAX = 10.0
POSITION_MAX = 2**63 - 1  # a log position is a BIGINT
# How far past the log's head a min_position may be: none. Every position a client holds
# came from a committed write, so the store's head already includes it.
MIN_POSITION_AHEAD_OF_HEAD_MAX = 0
AUDIT_STATUSES = TERMINAL_STATES | NON_TERMINAL_STATES
RECONCILIATION_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    services = services or build_services(settings)

    @asynccontextmanager
    async def lifespan(running_app: FastAPI) -> AsyncIterator[None]:
        await services.start_async()
        # Load and warm the PII engine in the background: the app serves at once, and a
        # request that needs screening before it is ready waits for it (fail closed).
        pii_service(services).start()
        leases = request_leases(services).start()
        sweeper = None
        if services.settings.run_sweeper:
            from gateway.sweeper import Sweeper

            sweeper = Sweeper(services).start()
        from gateway.audit import audit_service

        audit = audit_service(services).start()  # the Merkle log follows the writer
        try:
            async with running_app.state.mcp_running:  # the MCP transport's task group
                yield
        finally:
            audit.stop()
            if sweeper is not None:
                sweeper.stop()
            leases.stop()
            await services.aclose()

    app = FastAPI(
        title="Ledgergate", version="0.1.0", lifespan=lifespan, default_response_class=JsonResponse
    )
    app.state.services = services
    # Outermost: a project past its in-flight limit is refused before any work is done.
    app.add_middleware(
        ProjectConcurrencyMiddleware, inflight=services.inflight, cache=services.cache
    )

    @app.middleware("http")
    async def request_id_on_every_response(request: Request, call_next: Any) -> Response:
        # A NUL, control character or lone surrogate in the path or a query value would
        # reach SQL parameters (PostgreSQL refuses NUL): refused here, for every route.
        bad = _unstorable_url_part(request)
        if bad is not None:
            error = GatewayError(
                "invalid_request",
                f"'{bad}' contains a NUL, a control character or a lone surrogate",
                param=bad,
            )
            return await read_error(request, error)
        response = await call_next(request)
        if "x-request-id" not in response.headers:
            response.headers["X-Request-Id"] = new_request_id()
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        code = "unsupported_endpoint" if error.status_code in (404, 405) else "invalid_request"
        message = (
            f"{request.method} {request.url.path} is not an endpoint of this gateway"
            if error.status_code in (404, 405)
            else str(error.detail)
        )
        # A 405 names the methods the path does accept (Starlette puts them in `Allow`).
        return error_response(
            GatewayError(
                code, message, status=error.status_code, headers=dict(error.headers or {})
            ),
            new_request_id(),
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> Response:
        first = error.errors()[0] if error.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return error_response(
            GatewayError("invalid_request", str(first.get("msg", "invalid request")), param=param),
            new_request_id(),
        )

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception) -> Response:
        log.exception("unhandled error on %s", request.url.path, exc_info=error)
        return error_response(as_gateway_error(error), new_request_id())

    # --- the OpenAI-compatible surface --------------------------------------------------------

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await chat_completions(request, services)

    @app.post("/v1/embeddings")
    async def embeddings_route(request: Request) -> Response:
        return await embeddings(request, services)

    async def routing_scope(request: Request) -> tuple[Any, Any]:
        """(effective tier, catalog) of the caller (gateway/data_filters.routing_scope)."""
        from gateway.data_filters import routing_scope as scope_of

        project = await read_project(services.cache, services.settings.admin_token, request)
        return await scope_of(services, project, request.query_params.get("compliance"))

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        from gateway.data_filters import models_listing_read

        try:
            project = await read_project(services.cache, services.settings.admin_token, request)
            listing = await models_listing_read(
                services, project, request.query_params.get("compliance")
            )
            return JsonResponse(listing, headers={"X-Request-Id": new_request_id()})
        except Exception as error:
            return await read_error(request, error)

    @app.get("/v1/models/leaderboard")
    async def models_leaderboard(request: Request) -> Response:
        from gateway.routing.models_api import leaderboard_payload

        try:
            effective, catalog = await routing_scope(request)
            payload = leaderboard_payload(services.routing.router, effective, catalog)
            return JsonResponse(payload, headers={"X-Request-Id": new_request_id()})
        except Exception as error:
            return await read_error(request, error)

    @app.get("/v1/models/{model:path}")
    async def models_get(request: Request, model: str) -> Response:
        from gateway.routing.models_api import models_listing

        try:
            effective, catalog = await routing_scope(request)
            listing = models_listing(catalog, effective, services.clock.now())
            # An alias names the same model as chat accepts it: answer with the catalog entry.
            spec = catalog.get(model)
            wanted = spec.name if spec is not None else model
            for item in listing["data"]:
                if item["id"] == wanted:
                    return JsonResponse(item)
            raise GatewayError(
                "model_not_found",
                f"the model {model[:200]!r} is not served here for this project's tier",
                param="model",
            )
        except Exception as error:
            return await read_error(request, error)

    install_unsupported_routes(app, services)
    install_observability(app, services)  # /health, /ready, /metrics, traces, access log

    # --- read side ----------------------------------------------------------------------------

    async def project_of(request: Request) -> str:
        """A key's own project, or the admin token's `?project_id=` (gateway/read_scope.py)."""
        project = await read_project(services.cache, services.settings.admin_token, request)
        return str(project.id)

    async def read_error(request: Request, error: BaseException) -> Response:
        """A read's error response; bad input from a known project (a bad filter value) is
        recorded in its audit log like any other rejection."""
        gateway_error = as_gateway_error(error)
        request_id = new_request_id()
        # Bad input (400) is recorded; a lookup that finds nothing (404) is not: the audit
        # log would otherwise fill with every probe for another project's ids.
        if gateway_error.status == 400:
            principal = getattr(request.state, "principal", None)
            if principal is None and request.headers.get("authorization"):
                try:
                    principal = await authenticate_key(
                        services.cache, request.headers.get("authorization")
                    )
                except Exception:  # not a project's request: nothing of theirs to record
                    principal = None
            if principal is not None:
                await record_read_rejection(request, request_id, principal, gateway_error)
        return error_response(gateway_error, request_id)

    async def record_read_rejection(
        request: Request, request_id: str, principal: Any, error: GatewayError
    ) -> None:
        key, project = principal
        ctx = Context(request_id=request_id, started=0.0, services=services)
        ctx.received_at = services.clock.now()
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
            plain = re.fullmatch(r"/[A-Za-z0-9/_.\-]{0,100}", request.url.path)
            path = request.url.path if plain else "/v1/unknown"
        # What is stored names the code and the field, never the value the client sent.
        stored = GatewayError(
            error.code,
            f"{request.method} {path} refused: {error.code}"
            + (f" (param {error.param})" if error.param else ""),
            status=error.status,
            error_type=error.error_type,
        )
        await record_rejection(ctx, stored, endpoint=f"{request.method} {path}")

    async def wait_for(request: Request) -> None:
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
        await require_existing_position(position)
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

    async def require_existing_position(position: int) -> None:
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

    def parse_time(request: Request, name: str) -> datetime | None:
        raw = request.query_params.get(name)
        if raw is None:
            return None
        try:
            return parse_instant(raw)
        except ValueError:
            raise GatewayError(
                "invalid_request", f"{name} must be an ISO 8601 instant with a timezone", param=name
            ) from None

    @app.get("/v1/data/audit")
    async def audit_list(request: Request) -> Response:
        from gateway.data_filters import search_audit

        try:
            project_id = await project_of(request)
            await wait_for(request)
            params = dict(request.query_params)
            result = await anyio.to_thread.run_sync(
                lambda: search_audit(services.store, project_id, params)
            )
            return JsonResponse(result)
        except Exception as error:
            return await read_error(request, error)

    @app.get("/v1/data/audit/{request_id}")
    async def audit_get(request: Request, request_id: str) -> Response:
        try:
            project_id = await project_of(request)
            await wait_for(request)
            record = await anyio.to_thread.run_sync(
                request_record, services, project_id, request_id
            )
            return JsonResponse(record)
        except Exception as error:
            return await read_error(request, error)

    @app.get("/v1/billing/balance")
    async def balance(request: Request) -> Response:
        try:
            project_id = await project_of(request)
            # A test key reads its project's test balance (test mode); a live key and the
            # admin token read the live one.
            authorization = request.headers.get("authorization") or ""
            presented = authorization.partition(" ")[2].strip()
            admin = is_admin_token(services.settings.admin_token, authorization)
            mode = MODE_LIVE if admin else key_mode(presented)
            await wait_for(request)
            result = await anyio.to_thread.run_sync(balance_read, services, project_id, mode)
            return JsonResponse(result)
        except Exception as error:
            return await read_error(request, error)

    # --- admin ----------------------------------------------------------------------------------

    def require_admin(request: Request) -> None:
        admin_gate(services.settings.admin_token, request.headers.get("authorization"))

    # Reconciliations compare the platform's provider costs with provider invoices: a
    # finance (admin) concern, not a project's, so they need the admin token.
    @app.get("/v1/billing/reconciliations")
    async def reconciliations_list(request: Request) -> Response:
        try:
            require_admin(request)
            await wait_for(request)
            params = request.query_params
            try:
                limit = int(params.get("limit", RECONCILIATIONS_PAGE_DEFAULT))
            except ValueError:
                raise GatewayError(
                    "invalid_request", "limit must be an integer", param="limit"
                ) from None
            month = params.get("month")
            if month is not None and not RECONCILIATION_MONTH.fullmatch(month):
                raise GatewayError("invalid_request", "month must be YYYY-MM", param="month")
            provider = params.get("provider")
            lines = params.get("lines", "false").lower() in ("1", "true", "yes")
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
        except Exception as error:
            return error_response(as_gateway_error(error), new_request_id())

    @app.get("/v1/billing/reconciliations/{reconciliation_id}")
    async def reconciliation_get(request: Request, reconciliation_id: str) -> Response:
        try:
            require_admin(request)
            await wait_for(request)
            try:
                identity = str(UUID(reconciliation_id))
            except ValueError:
                raise GatewayError(
                    "reconciliation_not_found", "no such reconciliation", param="id"
                ) from None
            record, position = await anyio.to_thread.run_sync(
                get_reconciliation, services.store, identity
            )
            if record is None:
                raise GatewayError("reconciliation_not_found", "no such reconciliation", param="id")
            return JsonResponse({**record, "as_of_position": position})
        except Exception as error:
            return error_response(as_gateway_error(error), new_request_id())

    @app.get("/v1/admin/projections/dead-letters")
    async def admin_dead_letters(request: Request) -> Response:
        from projections.runner import DEAD_LETTERS_PAGE_MAX, list_dead_letters

        try:
            require_admin(request)
            view = request.query_params.get("view")
            if view is not None and view not in {v.name for v in services.runner.views}:
                raise GatewayError("invalid_request", "view must name a read model", param="view")
            limit = bounded_int(request, "limit", 100, 1, DEAD_LETTERS_PAGE_MAX)
            rows = await anyio.to_thread.run_sync(
                lambda: list_dead_letters(services.store, view=view, limit=limit)
            )
            return JsonResponse({"object": "list", "data": rows})
        except Exception as error:
            return error_response(as_gateway_error(error), new_request_id())

    @app.get("/v1/admin/auth-failures")
    async def admin_auth_failures(request: Request) -> Response:
        """Who failed to authenticate (the presented key's id, never the key), from where,
        when and how often: rows newest first, or counts with `group_by`."""
        from projections.auth_failures import (
            AUTH_FAILURE_CODES,
            AUTH_FAILURES_PAGE_DEFAULT,
            AUTH_FAILURES_PAGE_MAX,
            GROUP_COLUMNS,
            list_auth_failures,
        )

        try:
            require_admin(request)
            await wait_for(request)
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
                try:
                    key_fingerprint = str(UUID(key_fingerprint))
                except ValueError:
                    raise GatewayError(
                        "invalid_request",
                        "key_fingerprint must be a key id",
                        param="key_fingerprint",
                    ) from None
            client_ip = params.get("client_ip")
            if client_ip is not None and (len(client_ip) > 64 or not client_ip.isprintable()):
                raise GatewayError(
                    "invalid_request", "client_ip is not an address", param="client_ip"
                )
            raw_cursor = params.get("cursor")
            cursor = None
            if raw_cursor is not None:
                if not raw_cursor.isdigit() or len(raw_cursor) > 19:
                    raise GatewayError(
                        "invalid_cursor", "cursor is not from next_cursor", param="cursor"
                    )
                cursor = int(raw_cursor)
            limit = bounded_int(
                request, "limit", AUTH_FAILURES_PAGE_DEFAULT, 1, AUTH_FAILURES_PAGE_MAX
            )
            since, until = parse_time(request, "since"), parse_time(request, "until")
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
        except Exception as error:
            return error_response(as_gateway_error(error), new_request_id())

    async def admin(request: Request, build: Any) -> Response:
        try:
            require_admin(request)
            body = parse_json_body(await request.body())
            check_body_strings(body, chars_max=ADMIN_STRING_CHARS_MAX)
            command = build(body)
            if inspect.isawaitable(command):  # a builder that must read state first
                command = await command
            outcome = await services.writer.execute_async(command)
            return JsonResponse(
                jsonable(outcome.value),
                status_code=200,
                headers={"X-LG-Ledger-Position": str(outcome.position or 0)},
            )
        except (KeyError, TypeError) as error:
            return error_response(
                GatewayError("invalid_request", f"missing or invalid field: {error}"),
                new_request_id(),
            )
        except ValueError as error:
            return error_response(
                GatewayError("invalid_request", str(error)[:200]), new_request_id()
            )
        except Exception as error:
            return error_response(as_gateway_error(error), new_request_id())

    def create_project_command(b: dict[str, Any]) -> c.CreateProject:
        strict = bool(b.get("strict", False))
        check_strict_project(services.settings.raw, strict)
        return c.CreateProject(
            name=str(b["name"]),
            tier=str(b.get("tier", "unrestricted")),
            plan=str(b.get("plan", "pro")),
            currency=str(b.get("currency", "USD")),
            fee_rate=to_decimal(b.get("fee_rate", "0.05")),
            strict=strict,
        )

    @app.post("/v1/admin/projects")
    async def admin_project(request: Request) -> Response:
        return await admin(request, create_project_command)

    @app.post("/v1/admin/keys")
    async def admin_key(request: Request) -> Response:
        return await admin(
            request,
            lambda b: c.CreateApiKey(
                project_id=UUID(str(b["project_id"])),
                daily_budget=None
                if b.get("daily_budget") is None
                else to_decimal(b["daily_budget"]),
                test=bool(b.get("test", False)),
            ),
        )

    @app.post("/v1/admin/keys/{key_id}/revoke")
    async def admin_revoke(request: Request, key_id: str) -> Response:
        return await admin(
            request,
            lambda b: c.RevokeApiKey(
                key_id=UUID(key_id), reason=str(b.get("reason", "revoked by admin"))
            ),
        )

    @app.post("/v1/admin/topups")
    async def admin_topup(request: Request) -> Response:
        return await admin(
            request,
            lambda b: c.TopUp(
                project_id=UUID(str(b["project_id"])),
                amount=to_decimal(b["amount"]),
                currency=str(b["currency"]),
                reference=str(b["reference"]),
                test=b.get("test") is True,
            ),
        )

    async def price_command(b: dict[str, Any]) -> c.SetPrice:
        project_id = None if b.get("project_id") is None else UUID(str(b["project_id"]))
        routing = None
        if project_id is not None:
            found = await services.cache.get(ProjectRouting.create_id(str(project_id)))
            routing = found if isinstance(found, ProjectRouting) else None
        model = price_model(services.routing.catalog, routing, str(b["model"]), project_id)
        return c.SetPrice(
            model=model,
            project_id=project_id,
            input_per_mtok=to_decimal(b["input_per_mtok"]),
            output_per_mtok=to_decimal(b["output_per_mtok"]),
            cached_input_per_mtok=None
            if b.get("cached_input_per_mtok") is None
            else to_decimal(b["cached_input_per_mtok"]),
            currency=str(b.get("currency", "USD")),
            effective_from=parse_instant(str(b["effective_from"])),
        )

    @app.post("/v1/admin/prices")
    async def admin_price(request: Request) -> Response:
        return await admin(request, price_command)

    def _invalidate_routing(project_id: str) -> None:
        try:
            services.routing.project_routing.invalidate(UUID(project_id))
        except ValueError:  # a malformed id was already answered with a 400
            pass

    @app.post("/v1/admin/projects/{project_id}/models")
    async def admin_custom_model(request: Request, project_id: str) -> Response:
        from domain.routing_handlers import AddCustomModel

        response = await admin(
            request,
            lambda b: AddCustomModel(
                project_id=UUID(project_id), entry=b, added_by=str(b.get("added_by", "admin"))
            ),
        )
        _invalidate_routing(project_id)
        return response

    @app.post("/v1/admin/projects/{project_id}/endpoints")
    async def admin_custom_endpoint(request: Request, project_id: str) -> Response:
        from domain.routing_handlers import AddCustomEndpoint

        response = await admin(
            request,
            lambda b: AddCustomEndpoint(
                project_id=UUID(project_id),
                provider=str(b["provider"]),
                name=str(b["name"]),
                base_url=str(b["base_url"]),
                region=str(b.get("region") or ""),
                api_key_ref=str(b.get("api_key_ref") or ""),
                models=tuple(str(m) for m in b.get("models") or ()),
                added_by=str(b.get("added_by", "admin")),
            ),
        )
        _invalidate_routing(project_id)
        return response

    @app.post("/v1/admin/fx-rates")
    async def admin_fx(request: Request) -> Response:
        return await admin(
            request,
            lambda b: c.SetFxRate(
                base=str(b["base"]),
                quote=str(b["quote"]),
                rate=to_decimal(b["rate"]),
                effective_from=parse_instant(str(b["effective_from"])),
            ),
        )

    # Plans, quotas, BYOK, usage and pricing reads (the ledger half of issue 5).
    from gateway.ledger_routes import register_ledger_routes

    register_ledger_routes(
        app,
        services,
        project_of=project_of,
        wait_for=wait_for,
        admin=admin,
        read_error=read_error,
    )

    # The tamper-evident log (issue 13): checkpoints, the verifier key, proofs.
    from gateway.audit_routes import register_audit_routes

    register_audit_routes(
        app, services, project_of=project_of, wait_for=wait_for, read_error=read_error
    )

    # The data API of issue 12: routing, PII decisions, model health, the events feed.
    from gateway.data_routes import register_data_routes

    register_data_routes(
        app, services, project_of=project_of, wait_for=wait_for, read_error=read_error
    )

    # The MCP server (POST /v1/mcp): the data reads as tools for agents.
    from gateway.mcp_server import install_mcp

    app.state.mcp_running = install_mcp(app, services)

    # The audit dashboard (GET /dashboard) and the admin's project list it needs.
    from gateway.dashboard import install_dashboard

    install_dashboard(app, services)

    # Temporary credentials (issue 14): POST /v1/credentials, /v1/credentials/{id}/revoke.
    from gateway.http.credentials import router as credentials_router

    app.include_router(credentials_router)

    install_openapi(app)  # after every route: the document covers them all
    return app


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


def _unstorable_url_part(request: Request) -> str | None:
    """The name of the path or query part holding text storage refuses, if any."""
    if has_unstorable_text(request.url.path):
        return "path"
    for name, value in request.query_params.multi_items():
        if has_unstorable_text(name) or has_unstorable_text(value):
            return name if PLAIN_PARAM.fullmatch(name) else "query"
    return None


__all__ = ["create_app", "InvalidAmount"]
