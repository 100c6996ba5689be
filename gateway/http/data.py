"""The data and audit reads: `/v1/data/audit` (and one request's record and proofs), the
tamper-evident log (`/v1/audit/*`: checkpoint, verifier key, consistency proofs), the data API
of issue 12 for SIEMs and dashboards (`/v1/data/routing`, `/pii`, `/models`, `/events` as
NDJSON) and `/v1/data/pricing` (a price at an instant, or its history).

Read-only; an API key reads its own project, the admin token one project named by
`?project_id=` (gateway/http/deps.py); `min_position` like every read; a bad filter is a
recorded 400 (gateway/http/handlers.py). Each data read is one function of (services,
project id, parameters) so the MCP tools (gateway/mcp_server.py) return exactly what the
REST twin does.

Audit proofs are scoped like every read: a project gets proofs only for its own requests
(404 otherwise). The sibling hashes of a proof are SHA-256 digests of other events' leaf
bytes; each leaf holds a 128-bit aggregate id that is random or derived from a random id,
and a microsecond timestamp, so a digest can be neither inverted nor confirmed by guessing
another tenant's event. Sizes and positions say how many events the whole gateway has
recorded, as any transparency log's checkpoints do.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

import anyio.to_thread
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from domain.audit_log import leaf_bytes
from domain.clock import parse_instant
from domain.ids import REQUEST_ID_PREFIX
from domain.merkle import ProofError
from domain.money import check_currency
from domain.project import Project
from gateway.audit import AuditService, audit_service
from gateway.auth import authenticate_key
from gateway.bootstrap import Services
from gateway.data_filters import page_cursor as _cursor
from gateway.data_filters import page_limit as _limit
from gateway.data_filters import request_record, search_audit
from gateway.data_filters import time_window as _window
from gateway.errors import GatewayError
from gateway.http.deps import (
    ProjectId,
    ServicesDep,
    Waited,
    project_read_route,
    wait_for_min_position,
)
from gateway.jsonable import jsonable
from gateway.responses import JsonResponse
from gateway.routing.balancer import owning_project
from gateway.validation import MODEL_SYNTAX
from projections import data_queries, ledger_queries, queries
from projections.audit_tree import StoredCheckpoint, record_of
from projections.project_events import EVENTS_PAGE_DEFAULT, EVENTS_PAGE_MAX, list_project_events

MODEL_CHARS_MAX = 200

EVENT_TYPE_SYNTAX = re.compile(r"[A-Z][A-Za-z]{0,63}\.[A-Z][A-Za-z]{0,63}")
EVENT_TYPES_MAX = 20


def _invalid(message: str, param: str) -> GatewayError:
    return GatewayError("invalid_request", message, param=param)


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


REQUEST_ID_CHARS_MAX = 100
SIZE_MAX = 2**63 - 1  # BIGINT: a larger size is a client mistake, not a database error


def _wants_text(request: Request) -> bool:
    if request.query_params.get("format") == "note":
        return True
    accept = request.headers.get("accept", "")
    return "text/plain" in accept and "application/json" not in accept


def _int_param(request: Request, name: str, default: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise GatewayError(
            "invalid_request", f"{name} must be a non-negative integer", param=name
        ) from None
    if not 0 <= value <= SIZE_MAX:
        raise GatewayError(
            "invalid_request", f"{name} must be an integer from 0 to {SIZE_MAX}", param=name
        )
    return value


def _checkpoint_json(checkpoint: StoredCheckpoint, origin: str | None) -> dict[str, Any]:
    return {
        "origin": origin,
        "size": checkpoint.size,
        "root_hash": checkpoint.root.hex(),
        "root_hash_base64": base64.b64encode(checkpoint.root).decode(),
        "note": checkpoint.note,
        "public_key": checkpoint.vkey,
        "created_at": checkpoint.created_at,
    }


def _no_checkpoint() -> GatewayError:
    return GatewayError(
        "checkpoint_not_found",
        "no signed checkpoint yet: the log signs one every N events or T seconds",
    )


def _service(services: Services) -> AuditService:
    service = audit_service(services)
    if not service.settings.enabled:
        raise GatewayError(
            "audit_log_disabled",
            "the tamper-evident log is off (LEDGERGATE_AUDIT_LOG=0)",
        )
    return service


def request_proof(
    service: AuditService, request_id: str, checkpoint_size: int | None
) -> dict[str, Any]:
    merkle = service.merkle
    if checkpoint_size is None:
        checkpoint = merkle.latest_checkpoint()
    else:
        checkpoint = merkle.checkpoint_at(checkpoint_size)
        if checkpoint is None:
            raise GatewayError(
                "checkpoint_not_found",
                f"no signed checkpoint of size {checkpoint_size}",
                param="checkpoint",
            )
    leaves = merkle.leaves_for_request(request_id)
    events = []
    recorder = merkle.app.recorder
    for leaf in leaves:
        found = recorder.select_notifications(start=leaf.position, limit=1)
        stored = found[0] if found and int(found[0].id) == leaf.position else None
        covered = checkpoint is not None and leaf.leaf_index < checkpoint.size
        entry: dict[str, Any] = {
            "leaf_index": leaf.leaf_index,
            "position": leaf.position,
            "aggregate_id": leaf.originator_id,
            "version": leaf.originator_version,
            "leaf_hash": leaf.leaf_hash.hex(),
            "leaf": None,
            "topic": None,
            "covered": covered,
            "inclusion_proof": None,
        }
        if stored is not None:
            record = record_of(stored)
            entry["leaf"] = base64.b64encode(leaf_bytes(record)).decode()
            entry["topic"] = record.topic
        if covered and checkpoint is not None:
            entry["inclusion_proof"] = [
                value.hex() for value in merkle.inclusion_proof(leaf.leaf_index, checkpoint.size)
            ]
        events.append(entry)
    return {
        "request_id": request_id,
        "checkpoint": _checkpoint_json(checkpoint, merkle.origin) if checkpoint else None,
        "tree_size": merkle.size(),
        "hash": "RFC 9162 SHA-256: leaf = H(0x00 || leaf), node = H(0x01 || left || right)",
        "events": events,
    }


async def pricing_read(
    services: Services, project: Project, params: Mapping[str, Any]
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
    catalog = await services.routing.project_catalog(project.id, services.cache.get)
    spec = catalog.get(model)
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


router = APIRouter()


# --- the audit view ---------------------------------------------------------------------------


@router.get("/v1/data/audit")
async def audit_list(
    request: Request, services: ServicesDep, project_id: ProjectId, _waited: Waited
) -> Response:
    params = dict(request.query_params)
    result = await anyio.to_thread.run_sync(
        lambda: search_audit(services.store, project_id, params)
    )
    return JsonResponse(result)


@router.get("/v1/data/audit/{request_id}")
async def audit_get(
    services: ServicesDep, project_id: ProjectId, _waited: Waited, request_id: str
) -> Response:
    record = await anyio.to_thread.run_sync(request_record, services, project_id, request_id)
    return JsonResponse(record)


# --- the tamper-evident log (issue 13) --------------------------------------------------------


@router.get("/v1/audit/checkpoint")
async def audit_checkpoint(request: Request, services: ServicesDep, _: ProjectId) -> Response:
    service = _service(services)
    checkpoint = await anyio.to_thread.run_sync(service.merkle.latest_checkpoint)
    if checkpoint is None:
        raise _no_checkpoint()
    if _wants_text(request):
        return PlainTextResponse(checkpoint.note, media_type="text/plain; charset=utf-8")
    return JsonResponse(_checkpoint_json(checkpoint, service.merkle.origin))


@router.get("/v1/audit/public-key")
async def audit_public_key(request: Request, services: ServicesDep, _: ProjectId) -> Response:
    verifier = _service(services).verifier
    if verifier is None:
        raise GatewayError("audit_log_disabled", "this process has no audit signing key")
    if _wants_text(request):
        return PlainTextResponse(verifier.vkey() + "\n")
    return JsonResponse(
        {"public_key": verifier.vkey(), "origin": verifier.name, "algorithm": "ed25519"}
    )


@router.get("/v1/data/audit/{request_id}/proof")
async def audit_proof(
    request: Request, services: ServicesDep, project_id: ProjectId, request_id: str
) -> Response:
    checkpoint_size = _int_param(request, "checkpoint")
    await wait_for_min_position(request)  # after the checkpoint's syntax, as it always was
    if not request_id.startswith(REQUEST_ID_PREFIX) or len(request_id) > REQUEST_ID_CHARS_MAX:
        raise GatewayError("request_not_found", "no such request", param="request_id")
    record, _ = await anyio.to_thread.run_sync(queries.get_audit, services.store, request_id)
    if record is None or record.get("project_id") != project_id:
        raise GatewayError(
            "request_not_found", "no such request in this project", param="request_id"
        )
    service = _service(services)
    result = await anyio.to_thread.run_sync(request_proof, service, request_id, checkpoint_size)
    return JsonResponse(result)


@router.get("/v1/audit/consistency")
async def audit_consistency(request: Request, services: ServicesDep, _: ProjectId) -> Response:
    service = _service(services)
    old_size = _int_param(request, "from")
    if old_size is None:
        raise GatewayError("invalid_request", "from is required", param="from")
    latest = await anyio.to_thread.run_sync(service.merkle.latest_checkpoint)
    new_size = _int_param(request, "to", latest.size if latest else None)
    if new_size is None:
        raise _no_checkpoint()
    if old_size > new_size:
        raise GatewayError("invalid_request", "from must not exceed to", param="from")
    tree_size = await anyio.to_thread.run_sync(service.merkle.size)
    if new_size > tree_size:
        raise GatewayError(
            "invalid_request", f"to is beyond the tree (size {tree_size})", param="to"
        )

    def build() -> dict[str, Any]:
        merkle = service.merkle
        old_checkpoint = merkle.checkpoint_at(old_size)
        new_checkpoint = merkle.checkpoint_at(new_size)
        return {
            "from": old_size,
            "to": new_size,
            "from_root_hash": merkle.root(old_size).hex(),
            "to_root_hash": merkle.root(new_size).hex(),
            "proof": [value.hex() for value in merkle.consistency_proof(old_size, new_size)],
            "from_checkpoint": old_checkpoint.note if old_checkpoint else None,
            "to_checkpoint": new_checkpoint.note if new_checkpoint else None,
        }

    try:
        return JsonResponse(await anyio.to_thread.run_sync(build))
    except ProofError as error:  # sizes the tree cannot relate: the client's numbers
        raise GatewayError("invalid_request", str(error), param="from") from None


# --- the data API (issue 12) ------------------------------------------------------------------


router.add_api_route("/v1/data/routing", project_read_route(routing_read), methods=["GET"])
router.add_api_route("/v1/data/pii", project_read_route(pii_read), methods=["GET"])
router.add_api_route("/v1/data/models", project_read_route(models_read), methods=["GET"])


@router.get("/v1/data/events")
async def data_events(
    request: Request, services: ServicesDep, project_id: ProjectId, _waited: Waited
) -> Response:
    """NDJSON, one event a line in log order; `X-LG-Next-Cursor` continues after the
    last line (absent on the last page), `X-LG-As-Of-Position` says how far it is."""
    params = dict(request.query_params)
    result = await anyio.to_thread.run_sync(lambda: events_read(services, project_id, params))
    body = b"".join(orjson.dumps(event) + b"\n" for event in result["data"])
    headers = {"X-LG-As-Of-Position": str(result["as_of_position"])}
    if result["next_cursor"] is not None:
        headers["X-LG-Next-Cursor"] = result["next_cursor"]
    return Response(body, media_type="application/x-ndjson", headers=headers)


@router.get("/v1/data/pricing")
async def data_pricing(request: Request, services: ServicesDep) -> Response:
    # A key's own project only (the admin token has no price book of its own to read).
    _, project = await authenticate_key(services.cache, request.headers.get("authorization"))
    await wait_for_min_position(request)
    return JsonResponse(await pricing_read(services, project, dict(request.query_params)))


__all__ = [
    "events_read",
    "models_read",
    "pii_read",
    "pricing_read",
    "request_proof",
    "router",
    "routing_read",
]
