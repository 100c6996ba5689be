"""The response cache's admin surface: a project's cache policy (default mode, sharing
across its keys, the semantic cache), read with how much of the store the project holds.

    POST /v1/admin/projects/{project_id}/cache-policy   {"default_mode": "always", ...}
    GET  /v1/admin/projects/{project_id}/cache-policy

Admin token required. The input is turned into the command by the module the CLI uses too
(gateway/cache_policy_input.py); the command's event is the record of who changed what.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response

from domain.cache_policy import ProjectCachePolicy, policy_of
from domain.errors import UnknownProject
from domain.ids import new_request_id
from domain.project import Project
from gateway.cache_policy_input import cache_policy_command
from gateway.errors import GatewayError, as_gateway_error, error_response
from gateway.jsonable import jsonable
from gateway.read_scope import require_admin
from gateway.response_cache import response_cache
from gateway.responses import JsonResponse
from gateway.validation import ADMIN_STRING_CHARS_MAX, check_body_strings, parse_json_body


def _project_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise GatewayError(
            "invalid_request", "project_id must be a UUID", param="project_id"
        ) from None


def cache_admin_router(services: Any) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/admin/projects/{project_id}/cache-policy")
    async def set_cache_policy(request: Request, project_id: str) -> Response:
        try:
            require_admin(services.settings.admin_token, request.headers.get("authorization"))
            body = parse_json_body(await request.body())
            check_body_strings(body, chars_max=ADMIN_STRING_CHARS_MAX)
            if not isinstance(body, dict):
                raise GatewayError("invalid_request", "the body must be a JSON object")
            command = cache_policy_command(
                _project_id(project_id),
                body,
                sharing_available=response_cache(services).can_share,
            )
            outcome = await services.writer.execute_async(command)
            return JsonResponse(
                jsonable(outcome.value),
                headers={"X-LG-Ledger-Position": str(outcome.position or 0)},
            )
        except Exception as error:
            return error_response(as_gateway_error(error), new_request_id())

    @router.get("/v1/admin/projects/{project_id}/cache-policy")
    async def show_cache_policy(request: Request, project_id: str) -> Response:
        try:
            require_admin(services.settings.admin_token, request.headers.get("authorization"))
            project = _project_id(project_id)
            if not isinstance(await services.cache.get(project), Project):
                raise UnknownProject(f"project {project} not found")
            policy = policy_of(await services.cache.get(ProjectCachePolicy.create_id(str(project))))
            cache = response_cache(services)
            usage = await anyio.to_thread.run_sync(cache.project_usage_sync, str(project))
            return JsonResponse(
                {
                    "project_id": str(project),
                    **policy.as_dict(),
                    "store": {
                        **usage,
                        "entries_max": cache.project_entries_max,
                        "bytes_max": cache.project_bytes_max,
                    },
                }
            )
        except Exception as error:
            return error_response(as_gateway_error(error), new_request_id())

    return router
