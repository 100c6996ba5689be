"""Governed traces over HTTP (issue 12): `POST /v1/traces`, `GET /v1/traces/{id}`,
`POST /v1/traces/{id}/close` (API key auth), and the reads `/v1/data/traces` and
`/v1/data/traces/{id}` (the span tree; `?format=otlp` exports OTLP/JSON).

Each operation is one function of (services, caller, input) so the MCP tools
(gateway/mcp_server.py) return exactly what the REST twin does. The rules are the domain's
(domain/trace.py, domain/limits.py); this module parses input, resolves `allowed_models`
through the project's catalog, screens what is kept (name, metadata) for personal data,
and turns a request's `trace_id` / `X-Trace-Id` / `X-Parent-Span-Id` into its join.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from uuid import UUID

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response

from domain.errors import DomainError
from domain.ids import key_mode
from domain.money import to_decimal
from domain.trace import (
    ALLOWED_MODELS_MAX,
    MAX_DEPTH_DEFAULT,
    METADATA_ENTRIES_MAX,
    METADATA_KEY_CHARS_MAX,
    METADATA_VALUE_CHARS_MAX,
    RESOLVED_MODELS_MAX,
    TRACE_NAME_CHARS_MAX,
    CloseTrace,
    ExpireTrace,
    OpenTrace,
    TraceContract,
    TraceNotFound,
    is_governed_trace_id,
    new_trace_id,
)
from gateway.auth import authenticate_key
from gateway.bootstrap import Services
from gateway.data_filters import page_cursor, page_limit, routing_scope, time_window
from gateway.errors import GatewayError
from gateway.http.deps import ProjectId, ServicesDep, Waited, project_read_route
from gateway.otlp_export import trace_as_otlp
from gateway.pii.policy import LANGUAGE_AUTO
from gateway.pii.service import pii_service
from gateway.responses import JsonResponse
from gateway.routing.selector import (
    MODE_EXPLICIT,
    parse_model_field,
    select_candidates,
)
from gateway.validation import (
    MODEL_SYNTAX,
    USER_ID_CHARS_MAX,
    check_body_strings,
    check_text,
    looks_like_personal_data,
    parse_json_body,
)
from projections import traces as trace_queries

OPEN_FIELDS = frozenset(
    {"name", "budget", "max_depth", "allowed_models", "expires_in_s", "metadata"}
)
TRACE_STATUS_FILTERS = trace_queries.TRACE_STATUSES
FORMATS = ("json", "otlp")
SPAN_ID_CHARS_MAX = 100


def _invalid(message: str, param: str) -> GatewayError:
    return GatewayError("invalid_request", message, param=param)


def sweep_expired_traces(services: Any, limit: int = 100) -> list[str]:
    """Record the expiry of traces nobody has looked at since it happened (the sweeper's
    round; expiry itself needs no sweep: the Account's limit applies it by time)."""
    swept = []
    for row in trace_queries.expired_open_traces(services.store, services.clock.now(), limit):
        try:
            services.writer.execute(
                ExpireTrace(
                    trace_id=row["trace_id"], project_id=UUID(row["project_id"]), mode=row["mode"]
                )
            )
        except Exception:  # noqa: S112 - one bad trace must not stop the sweep
            continue
        swept.append(str(row["trace_id"]))
    return swept


# --- opening, reading, closing ------------------------------------------------------------------


def _int_field(body: Mapping[str, Any], name: str, default: int | None) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"'{name}' must be an integer", name)
    return value


async def screen_kept_text(services: Any, project_id: Any, texts: list[tuple[str, str]]) -> None:
    """What a trace keeps (its name, its metadata) lands in events: never personal data.
    The identifiers a checksum confirms and e-mail addresses are refused always; with a PII
    policy for the project, its screener looks for the policy's entity types too (the same
    screening a prompt gets, on the screener's own threads). Fails closed when that
    screening cannot run (503 pii_screening_unavailable)."""
    for param, text in texts:
        if looks_like_personal_data(text):
            raise _invalid(f"'{param}' looks like personal data; keep it out of a trace", param)
    service = pii_service(services)
    policy = service.policy_for(project_id, None)
    if policy is None or not policy.enabled:
        return
    screener = service.screener
    await screener.ensure_loaded()
    language = "en" if policy.language == LANGUAGE_AUTO else policy.language
    for param, text in texts:
        findings = await screener.run_in_worker(
            screener.analyze, text, language, policy.entity_types, policy.score_threshold
        )
        if findings:
            types = ", ".join(sorted({finding.entity_type for finding in findings}))
            raise _invalid(f"'{param}' contains personal data ({types})", param)


def _metadata(body: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    raw = body.get("metadata")
    if raw is None:
        return ()
    if not isinstance(raw, dict) or len(raw) > METADATA_ENTRIES_MAX:
        raise _invalid(
            f"'metadata' must be an object of at most {METADATA_ENTRIES_MAX} string values",
            "metadata",
        )
    pairs = []
    for key, value in sorted(raw.items()):
        if not isinstance(value, str):
            raise _invalid("'metadata' values must be strings", "metadata")
        if not key or len(key) > METADATA_KEY_CHARS_MAX:
            raise _invalid(
                f"a metadata key has 1 to {METADATA_KEY_CHARS_MAX} characters", "metadata"
            )
        check_text(value, "metadata", METADATA_VALUE_CHARS_MAX)
        pairs.append((str(key), value))
    return tuple(pairs)


async def resolve_allowed_models(
    services: Any, project: Any, entries: Any
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(as given, model names): a name or alias is its catalog model; a shorthand (`auto`,
    `eu-strict`, a size or variant) is every model it can route to within the project's
    tier. A model outside the tier is refused here, as chat would refuse it."""
    if (
        not isinstance(entries, list)
        or not 1 <= len(entries) <= ALLOWED_MODELS_MAX
        or not all(isinstance(entry, str) and MODEL_SYNTAX.fullmatch(entry) for entry in entries)
    ):
        raise _invalid(
            f"'allowed_models' must list 1 to {ALLOWED_MODELS_MAX} model names, aliases or "
            "shorthands",
            "allowed_models",
        )
    effective, catalog = await routing_scope(services, project, None)
    resolved: dict[str, None] = {}
    for entry in entries:
        request = parse_model_field(entry, catalog)
        candidates = select_candidates(request, catalog, effective, frozenset())
        chosen = candidates.primary if request.mode == MODE_EXPLICIT else candidates.all()
        for spec in chosen:
            resolved[spec.name] = None
    if len(resolved) > RESOLVED_MODELS_MAX:
        raise _invalid("'allowed_models' resolves to too many models", "allowed_models")
    requested = tuple(dict.fromkeys(entry.strip().lower() for entry in entries))
    return requested, tuple(sorted(resolved))


async def open_trace(services: Any, principal: tuple[Any, Any], body: Any, actor: str | None):
    """POST /v1/traces: the contract parsed, resolved and screened, then opened."""
    key, project = principal
    if not isinstance(body, dict):
        raise _invalid("the body must be a JSON object", "body")
    unknown = sorted(set(body) - OPEN_FIELDS)
    if unknown:
        raise _invalid(f"unknown field {unknown[0][:40]!r}", unknown[0][:40])
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _invalid(f"'name' must be 1 to {TRACE_NAME_CHARS_MAX} characters", "name")
    check_text(name, "name", TRACE_NAME_CHARS_MAX)
    if "budget" not in body:
        raise _invalid("'budget' is required (an amount in the project's currency)", "budget")
    try:
        budget: Decimal = to_decimal(body["budget"])
    except DomainError as error:
        raise _invalid(f"'budget': {error.message}", "budget") from None
    max_depth = _int_field(body, "max_depth", MAX_DEPTH_DEFAULT)
    expires_in_s = _int_field(body, "expires_in_s", None)
    metadata = _metadata(body)
    requested, allowed = await resolve_allowed_models(services, project, body.get("allowed_models"))
    kept = [("name", name)] + [(f"metadata.{k}", v) for k, v in metadata]
    kept += [(f"metadata.{k}", k) for k, _ in metadata]
    await screen_kept_text(services, project.id, kept)
    contract = TraceContract(
        trace_id=new_trace_id(),
        project_id=project.id,
        mode=key_mode(key.key_prefix),
        key_id=key.id,
        actor_id=actor,
        name=name.strip(),
        budget=budget,
        max_depth=int(max_depth if max_depth is not None else MAX_DEPTH_DEFAULT),
        allowed_models_requested=requested,
        allowed_models=allowed,
        expires_in_s=expires_in_s,
        metadata=metadata,
    )
    outcome = await services.writer.execute_async(OpenTrace(contract))
    return outcome.value


def _trace_id_in_path(trace_id: str) -> str:
    if not is_governed_trace_id(trace_id):
        # Not one of ours: reads exactly like an unknown trace (and is never recorded).
        raise TraceNotFound("no such trace in this project", param="trace_id")
    return trace_id


async def show_trace(services: Any, principal: tuple[Any, Any], trace_id: str) -> Any:
    """GET /v1/traces/{id}: the contract and the live budget, from the aggregates (an
    expiry seen here is recorded: ExpireTrace records nothing when none is due)."""
    key, project = principal
    command = ExpireTrace(
        trace_id=_trace_id_in_path(trace_id), project_id=project.id, mode=key_mode(key.key_prefix)
    )
    return (await services.writer.execute_async(command)).value


async def close_trace(services: Any, principal: tuple[Any, Any], trace_id: str) -> Any:
    key, project = principal
    command = CloseTrace(
        trace_id=_trace_id_in_path(trace_id),
        project_id=project.id,
        mode=key_mode(key.key_prefix),
        key_id=key.id,
    )
    return (await services.writer.execute_async(command)).value


# --- the data reads ------------------------------------------------------------------------------


def traces_filters(params: Mapping[str, Any]) -> dict[str, Any]:
    """The filters of `/v1/data/traces` and the MCP tool `list_traces`, or a 400."""
    status = params.get("status")
    if status is not None and status not in TRACE_STATUS_FILTERS:
        raise _invalid(f"status must be one of {', '.join(TRACE_STATUS_FILTERS)}", "status")
    limit = page_limit(params, trace_queries.TRACES_PAGE_DEFAULT, trace_queries.TRACES_PAGE_MAX)
    return {**time_window(params), "status": status, "after": page_cursor(params), "limit": limit}


def traces_read(services: Any, project_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
    return trace_queries.list_traces(
        services.store, project_id=project_id, now=services.clock.now(), **traces_filters(params)
    )


def trace_tree_read(
    services: Any, project_id: str, trace_id: Any, params: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """`/v1/data/traces/{id}` and the MCP tool `get_trace`: the span tree with its roll-ups,
    or (`format=otlp`) the same spans as OTLP/JSON."""
    output = (params or {}).get("format", "json")
    if output not in FORMATS:
        raise _invalid(f"format must be one of {', '.join(FORMATS)}", "format")
    if not isinstance(trace_id, str) or not is_governed_trace_id(trace_id):
        raise TraceNotFound("no such trace in this project", param="trace_id")
    tree = trace_queries.get_trace_tree(
        services.store, project_id=project_id, trace_id=trace_id, now=services.clock.now()
    )
    if tree is None:
        raise TraceNotFound("no such trace in this project", param="trace_id")
    if output == "otlp":
        return trace_as_otlp(tree, project_id=project_id)
    return tree


# --- routes ---------------------------------------------------------------------------------------

router = APIRouter()


async def _principal(request: Request, services: Services) -> tuple[Any, Any]:
    """The caller's key and project (an API key only: a trace belongs to a project)."""
    return await authenticate_key(services.cache, request.headers.get("authorization"))


def _actor(request: Request) -> str | None:
    actor = (request.headers.get("x-user-id") or "").strip()
    return check_text(actor, "x-user-id", USER_ID_CHARS_MAX) if actor else None


@router.post("/v1/traces")
async def post_trace(request: Request, services: ServicesDep) -> Response:
    principal = await _principal(request, services)
    body = parse_json_body(await request.body())
    check_body_strings(body)
    return JsonResponse(await open_trace(services, principal, body, _actor(request)))


@router.get("/v1/traces/{trace_id}")
async def get_trace(request: Request, services: ServicesDep, trace_id: str) -> Response:
    return JsonResponse(await show_trace(services, await _principal(request, services), trace_id))


@router.post("/v1/traces/{trace_id}/close")
async def post_close(request: Request, services: ServicesDep, trace_id: str) -> Response:
    return JsonResponse(await close_trace(services, await _principal(request, services), trace_id))


router.add_api_route("/v1/data/traces", project_read_route(traces_read), methods=["GET"])


@router.get("/v1/data/traces/{trace_id}")
async def data_trace(
    request: Request, services: ServicesDep, project_id: ProjectId, _waited: Waited, trace_id: str
) -> Response:
    params = dict(request.query_params)
    result = await anyio.to_thread.run_sync(
        lambda: trace_tree_read(services, project_id, trace_id, params)
    )
    return JsonResponse(result)


__all__ = [
    "close_trace",
    "open_trace",
    "router",
    "show_trace",
    "sweep_expired_traces",
    "trace_tree_read",
    "traces_filters",
    "traces_read",
]
