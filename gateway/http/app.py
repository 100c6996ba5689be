"""The FastAPI application: wiring only. The routes live in one router per surface
(gateway/http/{openai,data,billing,admin,unsupported,ops}.py), the errors in one handler
(gateway/http/handlers.py) over one status table (gateway/errors.py), the dependencies in
gateway/http/deps.py; the services are built once at start-up (gateway/bootstrap.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway.audit import audit_service
from gateway.bootstrap import Services, build_services
from gateway.config import Settings
from gateway.dashboard import install_dashboard
from gateway.fairness import ProjectConcurrencyMiddleware
from gateway.http import (
    admin,
    billing,
    cache_admin,
    credentials,
    data,
    openai,
    ops,
    traces,
    unsupported,
)
from gateway.http.handlers import install_error_handlers, request_id_on_every_response
from gateway.lifecycle.settlement import request_leases
from gateway.mcp_server import install_mcp
from gateway.observability import install as install_observability
from gateway.openapi import install_openapi
from gateway.pii.service import pii_service
from gateway.responses import JsonResponse
from gateway.semantic_embedder import install_semantic_cache
from gateway.sweeper import Sweeper
from gateway.tokens import warm_tokenizer
from gateway.warmup import mark_warm


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    services = services or build_services(settings)

    @asynccontextmanager
    async def lifespan(running_app: FastAPI) -> AsyncIterator[None]:
        await services.start_async()
        # Before the first connection is accepted: the first request must not pay for it.
        warm_tokenizer()
        await services.warm_up.run(services)  # the store pools (gateway/warmup.py)
        # Load and warm the PII engine in the background: the app serves at once, and a
        # request that needs screening before it is ready waits for it (fail closed).
        pii_service(services).start()
        leases = request_leases(services).start()
        sweeper = Sweeper(services).start() if services.settings.run_sweeper else None
        # The Merkle log follows the event log where the views are written: here alone, or
        # in the projection worker beside N serving processes (which read the stored tree).
        audit = audit_service(services)
        if services.settings.run_projections:
            audit.start()
        marking = asyncio.create_task(mark_warm(services))  # --workers N: this one is warm
        try:
            async with running_app.state.mcp_running:  # the MCP transport's task group
                yield
        finally:
            marking.cancel()
            if services.warm_markers is not None:
                services.warm_markers.unmark()
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
    app.add_middleware(request_id_on_every_response)
    install_error_handlers(app)

    app.include_router(openai.router)  # chat, embeddings, models, the leaderboard
    app.include_router(unsupported.router)  # OpenAI endpoints not offered here
    app.include_router(ops.router)  # /health, /ready, /metrics
    install_observability(app, services)  # metrics, traces, the access log (middleware)
    app.include_router(data.router)  # audit, the tamper-evident log, the data API, pricing
    app.include_router(billing.router)  # balance, usage, plan, reconciliations
    app.include_router(traces.router)  # governed traces and their span-tree reads
    app.include_router(admin.router)  # every /v1/admin/*
    app.include_router(cache_admin.router)  # /v1/admin/projects/{id}/cache-policy
    install_semantic_cache(services)  # the response cache embeds prompts through the router
    app.include_router(credentials.router)  # POST /v1/credentials, /v1/credentials/{id}/revoke
    app.state.mcp_running = install_mcp(app, services)  # POST /v1/mcp: the reads as tools
    install_dashboard(app, services)  # GET /dashboard and the admin's project list it needs
    install_openapi(app)  # after every route: the document covers them all
    return app


__all__ = ["create_app"]
