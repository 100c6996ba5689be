"""The audit dashboard: one static page at `GET /dashboard` and its assets, plus the one
admin read the page needs (`GET /v1/admin/projects`, the admin's project picker).

The page is plain HTML, CSS and JavaScript shipped in the package (no build step, nothing
fetched from elsewhere) and uses only the public read API with the caller's own bearer
token, so it can never show what that token could not read. A strict Content-Security-
Policy rides on every dashboard response: scripts, styles and requests come from this
origin only, and nothing may frame the page.
"""

from __future__ import annotations

from importlib import resources
from typing import Any
from uuid import UUID

import anyio.to_thread
from eventsourcing.utils import get_topic
from fastapi import FastAPI, Request
from fastapi.responses import Response

from domain.ids import new_request_id
from domain.project import Project
from gateway.bootstrap import Services
from gateway.errors import GatewayError, error_response
from gateway.read_scope import require_admin
from gateway.responses import JsonResponse
from projections.db import page_limit

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
# The only files served, with their media types: a fixed list, so no path from the URL
# ever reaches the file system.
STATIC_FILES = {
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "proof.js": "text/javascript; charset=utf-8",
}
# The picker lists projects in creation order; a gateway with more than this many
# projects pages with ?after= (the position of the last project of the previous page).
PROJECTS_PAGE_MAX = 500
PROJECT_CREATED_TOPIC = get_topic(Project.Created)


def _asset(name: str) -> bytes:
    return (resources.files(__package__) / "static" / name).read_bytes()


def list_projects(services: Services, after: int, limit: int) -> dict[str, Any]:
    """Projects in creation order, read from their creation events (the source of truth),
    each with its current name, tier, plan and currency."""
    notifications = services.app.recorder.select_notifications(
        start=after, limit=limit + 1, topics=(PROJECT_CREATED_TOPIC,), inclusive_of_start=False
    )
    page = list(notifications[:limit])
    data: list[dict[str, Any]] = []
    for notification in page:
        project = services.cache.get_sync(UUID(str(notification.originator_id)))
        if not isinstance(project, Project):
            continue
        data.append(
            {
                "object": "project",
                "id": str(project.id),
                "name": project.name,
                "tier": project.tier,
                "plan": project.plan,
                "currency": project.currency,
                "strict": bool(project.strict),
                "position": int(notification.id),
            }
        )
    has_more = len(notifications) > limit
    return {
        "object": "list",
        "data": data,
        "has_more": has_more,
        "next_after": int(page[-1].id) if has_more and page else None,
    }


def install_dashboard(app: FastAPI, services: Services) -> None:
    @app.get("/dashboard", include_in_schema=False)
    async def dashboard_page() -> Response:
        return Response(
            _asset("index.html"),
            media_type="text/html; charset=utf-8",
            headers={**SECURITY_HEADERS, "Cache-Control": "no-store"},
        )

    @app.get("/dashboard/static/{name}", include_in_schema=False)
    async def dashboard_static(name: str) -> Response:
        media_type = STATIC_FILES.get(name)
        if media_type is None:
            return error_response(
                GatewayError("unsupported_endpoint", "no such dashboard file", param="name"),
                new_request_id(),
            )
        return Response(
            _asset(name),
            media_type=media_type,
            headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"},
        )

    @app.get("/v1/admin/projects")
    async def admin_projects(request: Request) -> Response:
        # An error is answered by the app's one handler (gateway/http/handlers.py).
        require_admin(services.settings.admin_token, request.headers.get("authorization"))
        params = request.query_params
        try:
            after = int(params.get("after", "0"))
            limit = int(params.get("limit", PROJECTS_PAGE_MAX))
        except ValueError:
            raise GatewayError(
                "invalid_request", "after and limit must be integers", param="after"
            ) from None
        limit = page_limit(limit, PROJECTS_PAGE_MAX)
        result = await anyio.to_thread.run_sync(list_projects, services, max(after, 0), limit)
        return JsonResponse(result)


__all__ = ["CONTENT_SECURITY_POLICY", "install_dashboard", "list_projects"]
