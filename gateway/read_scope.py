"""Whose data a read may see: a project's API key reads its own project only; the admin
token reads any one project, named by `?project_id=`.

One home for the rule, used by every project-scoped read (audit, balance, usage, plan, the
model leaderboard). A key can never widen its scope: a `project_id` naming another project
is answered as "no such project", exactly as a project that does not exist, so a key learns
nothing about other tenants.
"""

from __future__ import annotations

import hmac
from uuid import UUID

from fastapi import Request

from domain.project import Project
from gateway.auth import authenticate_key
from gateway.cache import AggregateCache
from gateway.errors import GatewayError, uuid_or_refuse

PROJECT_ID_PARAM = "project_id"


def is_admin_token(admin_token: str | None, authorization: str | None) -> bool:
    """True only for `Bearer <the configured admin token>` (constant-time comparison)."""
    if not admin_token or not authorization:
        return False
    scheme, _, given = authorization.strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), admin_token.encode()
    )


def require_admin(admin_token: str | None, authorization: str | None) -> None:
    """The admin API's gate: off without a configured token, else the token is required."""
    if not admin_token:
        raise GatewayError("admin_api_disabled", "the admin API is off: set LEDGERGATE_ADMIN_TOKEN")
    if not is_admin_token(admin_token, authorization):
        raise GatewayError("invalid_admin_token", "a valid admin token is required")


def _named_project_id(request: Request) -> UUID | None:
    raw = request.query_params.get(PROJECT_ID_PARAM)
    if raw is None:
        return None
    return uuid_or_refuse(raw.strip(), "project_not_found", "no such project", PROJECT_ID_PARAM)


async def read_project(cache: AggregateCache, admin_token: str | None, request: Request) -> Project:
    """The project a read is about, or a structured error (401/400/404)."""
    authorization = request.headers.get("authorization")
    named = _named_project_id(request)
    if is_admin_token(admin_token, authorization):
        if named is None:
            raise GatewayError(
                "invalid_request",
                "the admin token reads one project at a time: pass ?project_id=",
                param=PROJECT_ID_PARAM,
            )
        project = await cache.get(named)
        if not isinstance(project, Project):
            raise GatewayError("project_not_found", "no such project", param=PROJECT_ID_PARAM)
        return project
    _, project = await authenticate_key(cache, authorization)
    if named is not None and named != project.id:
        raise GatewayError(
            "project_not_found", "no such project for this API key", param=PROJECT_ID_PARAM
        )
    return project


__all__ = ["PROJECT_ID_PARAM", "is_admin_token", "read_project", "require_admin"]
