"""The response cache's admin surface: a project's cache policy (default mode, sharing
across its keys, the semantic cache), read with how much of the store the project holds.

    POST /v1/admin/projects/{project_id}/cache-policy   {"default_mode": "always", ...}
    GET  /v1/admin/projects/{project_id}/cache-policy

Admin token required (the router's dependency). The body becomes the command through the
builder the CLI uses too (gateway/admin_commands.py, `set_cache_policy`); the command's
event is the record of who changed what. Errors go to the one exception handler.
"""

from __future__ import annotations

from uuid import UUID

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response

from domain.cache_policy import ProjectCachePolicy, policy_of
from domain.errors import UnknownProject
from domain.project import Project
from gateway import admin_commands as build
from gateway.errors import uuid_or_refuse
from gateway.http.admin import execute
from gateway.http.deps import AdminOnly, ServicesDep
from gateway.response_cache import response_cache
from gateway.responses import JsonResponse

router = APIRouter(prefix="/v1/admin", dependencies=[AdminOnly])


def _project_id(raw: str) -> UUID:
    return uuid_or_refuse(raw, "invalid_request", "project_id must be a UUID", "project_id")


@router.post("/projects/{project_id}/cache-policy")
async def set_cache_policy(request: Request, services: ServicesDep, project_id: str) -> Response:
    project = _project_id(project_id)
    sharing = response_cache(services).can_share
    return await execute(
        request,
        services,
        lambda body: build.set_cache_policy(project, body, sharing_available=sharing),
    )


@router.get("/projects/{project_id}/cache-policy")
async def show_cache_policy(services: ServicesDep, project_id: str) -> Response:
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
