"""Routes of the tamper-evident log (issue 13): the latest signed checkpoint, the log's
verifier key, a request's inclusion proofs and consistency proofs between tree sizes.

Scoped like every read: an API key is required; a project gets proofs only for its own
requests (404 otherwise, as other reads). The sibling hashes of a proof are SHA-256 digests
of other events' leaf bytes; each leaf holds a 128-bit aggregate id that is random or
derived from a random id, and a microsecond timestamp, so a digest can be neither inverted
nor confirmed by guessing another tenant's event. Sizes and positions say how many events
the whole gateway has recorded, as any transparency log's checkpoints do.

Registered by gateway/app.py (`register_audit_routes`), reusing its auth and
read-your-writes helpers so errors come in the same envelope.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

from domain.audit_log import leaf_bytes
from domain.ids import REQUEST_ID_PREFIX
from domain.merkle import ProofError
from gateway.audit import AuditService, audit_service
from gateway.bootstrap import Services
from gateway.errors import GatewayError
from gateway.responses import JsonResponse
from projections import queries
from projections.audit_tree import StoredCheckpoint, record_of

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
        status=404,
    )


def _service(services: Services) -> AuditService:
    service = audit_service(services)
    if not service.settings.enabled:
        raise GatewayError(
            "audit_log_disabled",
            "the tamper-evident log is off (LEDGERGATE_AUDIT_LOG=0)",
            status=503,
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
                status=404,
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


def register_audit_routes(
    app: FastAPI,
    services: Services,
    *,
    project_of: Callable[[Request], Awaitable[str]],
    wait_for: Callable[[Request], Awaitable[None]],
    read_error: Callable[[Request, BaseException], Awaitable[Response]],
) -> None:
    """`read_error` answers a failure like every read does (a project's bad input, a 400,
    is recorded in its audit log)."""

    @app.get("/v1/audit/checkpoint")
    async def audit_checkpoint(request: Request) -> Response:
        try:
            await project_of(request)
            service = _service(services)
            checkpoint = await anyio.to_thread.run_sync(service.merkle.latest_checkpoint)
            if checkpoint is None:
                raise _no_checkpoint()
            if _wants_text(request):
                return PlainTextResponse(checkpoint.note, media_type="text/plain; charset=utf-8")
            return JsonResponse(_checkpoint_json(checkpoint, service.merkle.origin))
        except Exception as error:
            return await read_error(request, error)

    @app.get("/v1/audit/public-key")
    async def audit_public_key(request: Request) -> Response:
        try:
            await project_of(request)
            service = _service(services)
            verifier = service.verifier
            if verifier is None:
                raise GatewayError(
                    "audit_log_disabled", "this process has no audit signing key", status=503
                )
            if _wants_text(request):
                return PlainTextResponse(verifier.vkey() + "\n")
            return JsonResponse(
                {"public_key": verifier.vkey(), "origin": verifier.name, "algorithm": "ed25519"}
            )
        except Exception as error:
            return await read_error(request, error)

    @app.get("/v1/data/audit/{request_id}/proof")
    async def audit_proof(request: Request, request_id: str) -> Response:
        try:
            project_id = await project_of(request)
            checkpoint_size = _int_param(request, "checkpoint")
            await wait_for(request)
            if (
                not request_id.startswith(REQUEST_ID_PREFIX)
                or len(request_id) > REQUEST_ID_CHARS_MAX
            ):
                raise GatewayError("request_not_found", "no such request", param="request_id")
            record, _ = await anyio.to_thread.run_sync(
                queries.get_audit, services.store, request_id
            )
            if record is None or record.get("project_id") != project_id:
                raise GatewayError(
                    "request_not_found", "no such request in this project", param="request_id"
                )
            service = _service(services)
            result = await anyio.to_thread.run_sync(
                request_proof, service, request_id, checkpoint_size
            )
            return JsonResponse(result)
        except Exception as error:
            return await read_error(request, error)

    @app.get("/v1/audit/consistency")
    async def audit_consistency(request: Request) -> Response:
        try:
            await project_of(request)
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
                    "proof": [
                        value.hex() for value in merkle.consistency_proof(old_size, new_size)
                    ],
                    "from_checkpoint": old_checkpoint.note if old_checkpoint else None,
                    "to_checkpoint": new_checkpoint.note if new_checkpoint else None,
                }

            try:
                return JsonResponse(await anyio.to_thread.run_sync(build))
            except ProofError as error:
                raise GatewayError("invalid_request", str(error), param="from") from None
        except Exception as error:
            return await read_error(request, error)
