"""The OpenAI-compatible surface: chat completions, embeddings, the model list (and one
model), and the models leaderboard. The two model calls hand the raw request to the request
lifecycle, which answers its own errors (before or after the first streamed byte)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from domain.catalog import Catalog
from domain.ids import new_request_id
from domain.tiers import EffectiveTier
from gateway.data_filters import models_listing_read, routing_scope
from gateway.errors import GatewayError
from gateway.http.deps import CallerProject, ServicesDep, services_of
from gateway.lifecycle import chat_completions, embeddings
from gateway.responses import JsonResponse
from gateway.routing.models_api import leaderboard_payload, models_listing

MODEL_ECHO_CHARS_MAX = 200

router = APIRouter()


@router.post("/v1/chat/completions")
async def chat(request: Request) -> Response:
    # The services straight off the app, not through a dependency: FastAPI's dependency
    # solving was 3% of the event loop's time per request, for one attribute read.
    return await own_task(chat_completions(request, services_of(request)))


@router.post("/v1/embeddings")
async def embeddings_route(request: Request) -> Response:
    return await own_task(embeddings(request, services_of(request)))


def own_task(work: Coroutine[Any, Any, Response]) -> asyncio.Future[Response]:
    """A model call's lifecycle as a task of its own. Every time a coroutine resumes (a
    commit done, the provider's bytes in), CPython re-enters each frame of the chain that
    awaits it: here some twenty-five of uvicorn, the middlewares and FastAPI's routing above
    the endpoint, on each of a request's dozen suspensions, measured as a tenth of a
    serving process's event-loop time. A task is resumed alone, and this chain once, when
    it ends. The task sees the request's context (the observation the middleware set);
    cancelling the request cancels it, and the request waits for it to end."""
    return asyncio.ensure_future(work)


async def _scope(
    request: Request, services: ServicesDep, project: CallerProject
) -> tuple[EffectiveTier, Catalog]:
    """(effective tier, catalog) of the caller, `?compliance=` tightening its tier."""
    return await routing_scope(services, project, request.query_params.get("compliance"))


@router.get("/v1/models")
async def models(request: Request, services: ServicesDep, project: CallerProject) -> Response:
    listing = await models_listing_read(services, project, request.query_params.get("compliance"))
    return JsonResponse(listing, headers={"X-Request-Id": new_request_id()})


@router.get("/v1/models/leaderboard")
async def models_leaderboard(
    request: Request, services: ServicesDep, project: CallerProject
) -> Response:
    effective, catalog = await _scope(request, services, project)
    payload = leaderboard_payload(services.routing.router, effective, catalog)
    return JsonResponse(payload, headers={"X-Request-Id": new_request_id()})


@router.get("/v1/models/{model:path}")
async def models_get(
    request: Request, model: str, services: ServicesDep, project: CallerProject
) -> Response:
    effective, catalog = await _scope(request, services, project)
    listing = models_listing(catalog, effective, services.clock.now())
    # An alias names the same model as chat accepts it: answer with the catalog entry.
    spec = catalog.get(model)
    wanted = spec.name if spec is not None else model
    for item in listing["data"]:
        if item["id"] == wanted:
            return JsonResponse(item)
    raise GatewayError(
        "model_not_found",
        f"the model {model[:MODEL_ECHO_CHARS_MAX]!r} is not served here for this project's tier",
        param="model",
    )


__all__ = ["router"]
