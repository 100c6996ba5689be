"""Per-project fairness: no tenant may hold more than its share of this process.

A project may have at most `project_inflight_max` requests in flight on one process (chat
and embeddings until their last byte is sent, streams included; reads, waits included).
One more is answered at once with `429 project_concurrency_exceeded` and `Retry-After`,
before any work is done. With the limit well below the shared upstream connection pool
(`upstream_connections_max`), one tenant's slow streams cannot take every connection.

The refusals are not recorded as ledger events: a flood of refused requests must not turn
into a flood of writes that slows every other tenant's durable commits.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from uuid import UUID

from domain.ids import api_key_id, hash_api_key, new_request_id
from domain.project import ApiKey
from gateway.auth import bearer_key
from gateway.cache import AggregateCache
from gateway.errors import GatewayError, error_response

log = logging.getLogger("ledgergate.fairness")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

RETRY_AFTER_S = 1
LIMITED_PATH_PREFIX = "/v1/"
UNLIMITED_PATH_PREFIX = "/v1/admin/"  # the operator's own API (admin token, no project)


class ProjectInflight:
    """Counts each project's requests in flight; `try_acquire` refuses past the limit."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the per-project in-flight limit must be at least 1")
        self.limit = limit
        self._counts: dict[UUID, int] = {}
        self._lock = threading.Lock()
        self.refused = 0

    def try_acquire(self, project_id: UUID) -> bool:
        with self._lock:
            count = self._counts.get(project_id, 0)
            if count >= self.limit:
                self.refused += 1
                return False
            self._counts[project_id] = count + 1
            return True

    def release(self, project_id: UUID) -> None:
        with self._lock:
            count = self._counts.get(project_id, 0) - 1
            if count > 0:
                self._counts[project_id] = count
            else:
                self._counts.pop(project_id, None)

    def in_flight(self, project_id: UUID) -> int:
        with self._lock:
            return self._counts.get(project_id, 0)


class ProjectConcurrencyMiddleware:
    """ASGI middleware: holds a project's slot for the whole exchange (a streaming
    response's last byte included) and answers 429 when the project has none left."""

    def __init__(self, app: ASGIApp, *, inflight: ProjectInflight, cache: AggregateCache) -> None:
        self.app = app
        self.inflight = inflight
        self.cache = cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        project_id = await self._project_of(scope) if scope["type"] == "http" else None
        if project_id is None:  # not a tenant request, or not authenticated: the app decides
            await self.app(scope, receive, send)
            return
        if not self.inflight.try_acquire(project_id):
            log.info("project %s refused: %d requests in flight", project_id, self.inflight.limit)
            error = GatewayError(
                "project_concurrency_exceeded",
                f"this project already has {self.inflight.limit} requests in flight on this "
                "gateway; retry when one has finished",
                extra={"limit": self.inflight.limit, "retry_after_seconds": RETRY_AFTER_S},
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
            await error_response(error, new_request_id())(scope, receive, send)
            return
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.inflight.release(project_id)

        async def send_and_release_at_the_end(message: MutableMapping[str, Any]) -> None:
            await send(message)
            if message.get("type") == "http.response.body" and not message.get("more_body"):
                # The last byte is out: the client's exchange is over. What the app still
                # does after it (the settlement's durable commit) is the gateway's work and
                # must not count against the tenant's next request (a client at 32
                # connections otherwise saw 429s with 50 allowed).
                release()

        try:
            await self.app(scope, receive, send_and_release_at_the_end)
        finally:
            release()

    async def _project_of(self, scope: Scope) -> UUID | None:
        path = str(scope.get("path", ""))
        if not path.startswith(LIMITED_PATH_PREFIX) or path.startswith(UNLIMITED_PATH_PREFIX):
            return None
        authorization = None
        for name, value in scope.get("headers") or ():
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        if self.cache.credentials is not None:
            # A temporary credential counts under the project that minted it.
            credential_project = self.cache.credentials.project_of(authorization)
            if credential_project is not None:
                return credential_project  # type: ignore[no-any-return]
        try:
            token = bearer_key(authorization)
        except GatewayError:
            return None
        key = await self.cache.get(api_key_id(hash_api_key(token)))
        if not isinstance(key, ApiKey) or key.revoked:
            return None
        return key.project_id
