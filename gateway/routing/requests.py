"""The chat and embeddings routes' use of the router: effective tier from project + request,
the project's catalog, the decision, the Route command value, and how a finished attempt is
measured."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from domain import commands as c
from domain.catalog import Catalog
from domain.errors import InvalidCommand, PriceNotFound
from domain.money import Money
from domain.tiers import EffectiveTier, effective_tier
from gateway.observability.core import traced_routing
from gateway.providers.base import ChatResult, EmbeddingResult, ProviderEndpoint
from gateway.routing.balancer import owning_project
from gateway.routing.decision import RouteDecision, RouteTarget
from gateway.routing.selector import required_capabilities
from gateway.routing.service import RoutingService


def compliance_preference(body: Mapping[str, Any]) -> str | None:
    preferences = body.get("routing_preferences")
    if preferences is None:
        return None
    if not isinstance(preferences, Mapping):
        raise InvalidCommand("routing_preferences must be an object", param="routing_preferences")
    compliance = preferences.get("compliance")
    if compliance is not None and not isinstance(compliance, str):
        raise InvalidCommand(
            "routing_preferences.compliance must be a tier name",
            param="routing_preferences.compliance",
        )
    return compliance


def effective_tier_for(project: Any, body: Mapping[str, Any]) -> EffectiveTier:
    return effective_tier(project.tier, compliance_preference(body), plan=project.plan)


def wants_valid_output(body: Mapping[str, Any]) -> bool:
    response_format = body.get("response_format")
    json_asked = isinstance(response_format, Mapping) and response_format.get("type") in (
        "json_object",
        "json_schema",
    )
    return json_asked or bool(body.get("tools"))


def output_valid(body: Mapping[str, Any], answer: Mapping[str, Any]) -> bool | None:
    """Did the model return what was asked for (parseable JSON, parseable tool arguments)?
    None when nothing structured was asked for."""
    if not wants_valid_output(body):
        return None
    for choice in answer.get("choices") or ():
        message = choice.get("message") if isinstance(choice, Mapping) else None
        if not isinstance(message, Mapping):
            return False
        try:
            for call in message.get("tool_calls") or ():
                json.loads(call["function"]["arguments"] or "{}")
            if not message.get("tool_calls"):
                response_format = body.get("response_format")
                if isinstance(response_format, Mapping) and response_format.get("type") in (
                    "json_object",
                    "json_schema",
                ):
                    json.loads(message.get("content") or "")
        except (ValueError, KeyError, TypeError):
            return False
    return True


@traced_routing
async def decide_for_request(
    routing: RoutingService,
    project: Any,
    body: Mapping[str, Any],
    load: Callable[[UUID], Awaitable[Any]],
    *,
    effective: EffectiveTier | None = None,
    capabilities: frozenset[str] | None = None,
    project_keys: Callable[[str, str], str | None] | None = None,
    narrow: Callable[[Catalog], Catalog] | None = None,
    allowed_models: frozenset[str] | None = None,
) -> RouteDecision:
    """`capabilities` overrides what the body needs (e.g. without "documents" when OCR will
    turn the PDFs into text first). `project_keys` resolves the project's own endpoints'
    key references (gateway/byok.ProjectEndpointKeys); without it they carry no key.
    `narrow` keeps only some of the project's models (a temporary credential's grant);
    `allowed_models` are a governed trace's (auto and shorthands choose among them)."""
    effective = effective or effective_tier_for(project, body)
    project_routing = await routing.project_routing.get(project.id, load)
    catalog = routing.catalog_for(project_routing)
    if narrow is not None:
        catalog = narrow(catalog)
    routing.sync_project_endpoints(project_routing, project_keys)
    return routing.router.decide(
        body.get("model"),
        effective,
        capabilities=capabilities if capabilities is not None else required_capabilities(body),
        wants_valid_output=wants_valid_output(body),
        catalog=catalog,
        project=str(project.id),
        fallback_models=fallback_models_requested(body),
        allowed_models=allowed_models,
    )


def fallback_models_requested(body: Mapping[str, Any]) -> bool:
    """`routing_preferences.fallback_models: true` lets a named model fail over to other
    compliant models; without it only the named model's own endpoints are tried."""
    preferences = body.get("routing_preferences")
    return isinstance(preferences, Mapping) and preferences.get("fallback_models") is True


def ocr_endpoints(routing: RoutingService) -> list[ProviderEndpoint]:
    """Mistral endpoints able to serve OCR now (breakers respected)."""
    spec = routing.catalog.require("mistral-ocr")
    return [pooled.endpoint for pooled in routing.pool.ordered(spec)]


def route_of(target: RouteTarget) -> c.Route:
    owner = owning_project(target.spec)
    return c.Route(
        model=target.spec.name,
        provider=target.spec.provider,
        upstream_model=target.spec.upstream_id,
        endpoint_name=target.endpoint.name,
        price_project_id=None if owner is None else UUID(owner),
    )


def measure_chat(
    body: Mapping[str, Any], at: datetime
) -> Callable[[Any], tuple[Money | None, bool | None]]:
    """(list-price cost, output validity) of a successful ChatResult, for the statistics.
    The charge itself is computed by the ledger from price events, not here."""

    def measure(value: Any) -> tuple[Money | None, bool | None]:
        result, target = value
        if not isinstance(result, ChatResult):
            return None, None
        usage = result.usage
        cost = _list_cost(
            target, at, usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens
        )
        return cost, output_valid(body, result.body)

    return measure


def measure_embeddings(at: datetime) -> Callable[[Any], tuple[Money | None, bool | None]]:
    """(list-price cost, None) of a successful EmbeddingResult, for the statistics: an
    embedding has no structured output to judge, only input tokens to price."""

    def measure(value: Any) -> tuple[Money | None, bool | None]:
        result, target = value
        if not isinstance(result, EmbeddingResult):
            return None, None
        usage = result.usage
        return _list_cost(target, at, usage.prompt_tokens, 0, usage.cached_tokens), None

    return measure


def _list_cost(
    target: Any, at: datetime, input_tokens: int, output_tokens: int, cached_tokens: int
) -> Money | None:
    """One attempt's usage at the model's list price in effect at `at` (None: no price)."""
    try:
        price = target.spec.price_at(at)
    except PriceNotFound:
        return None
    return price.cost(input_tokens, output_tokens, cached_tokens)
