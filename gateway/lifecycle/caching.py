"""The response cache's steps in a request (gateway/response_cache.py holds the cache itself):
plan before admission, look up after it, store after settlement, release at the end. The
request kinds call these and nothing else of the cache."""

from __future__ import annotations

from typing import Any

from gateway import response_cache as rc
from gateway.auth import presented_secret
from gateway.lifecycle.request import Admission, Intake
from gateway.routing.decision import RouteDecision, RouteTarget
from gateway.routing.selector import cache_hit_allowed


def plan(
    intake: Intake,
    headers: Any,
    endpoint: str,
    body: dict[str, Any],
    screened_body: dict[str, Any],
    effective: Any,
    decision: RouteDecision,
) -> rc.CachePlan | None:
    """The response cache's key for this request (chat and embeddings): bad cache headers
    are refused here, before anything is reserved."""
    if intake.project_id is None:
        return None
    return rc.plan_request(
        headers,
        body,
        endpoint=endpoint,
        api_key=presented_secret(headers.get("authorization")),
        project_id=intake.project_id,
        scope=effective.cache_scope(),
        models=tuple(target.spec.name for target in decision.targets),
        pii_policy=intake.pii.policy if intake.pii is not None else None,
        stream=intake.stream,
        screened_body=screened_body,
    )


async def look_up(services: Any, admitted: Admission, headers: dict[str, str]) -> str:
    """After admission (the hit passed budgets and quotas like any request): read the entry
    (the project's cache policy applied, the semantic cache when asked). A hit from a model
    the effective tier does not allow is never served (selector's rule). Returns the
    X-LG-Cache outcome; a hit names its model and provider in `headers`."""
    cache_plan = admitted.cache_plan
    if cache_plan is None:
        return rc.BYPASS
    # The effective tier picks the embedding model of a semantic lookup (one the tier allows).
    await rc.response_cache(services).lookup(cache_plan, admitted.effective)
    if cache_plan.hit is not None and not cache_hit_allowed(
        cache_plan.hit.model, admitted.effective, services.routing.catalog
    ):
        cache_plan.hit, cache_plan.outcome = None, rc.MISS
    if cache_plan.hit is not None:
        headers.update(
            {"X-LG-Model": cache_plan.hit.model, "X-LG-Provider": cache_plan.hit.provider}
        )
    headers.update(cache_plan.headers())  # a semantic hit's similarity, the embedding's id
    return cache_plan.outcome


def hit_of(admitted: Admission) -> rc.CacheEntry | None:
    return admitted.cache_plan.hit if admitted.cache_plan is not None else None


def release(services: Any, admitted: Admission) -> None:
    if admitted.cache_plan is not None:
        rc.response_cache(services).release(admitted.cache_plan)


async def store(services: Any, admitted: Admission, served: RouteTarget, **entry: Any) -> None:
    """After settlement: keep what the provider answered (placeholders, not raw PII)."""
    cache_plan = admitted.cache_plan
    if cache_plan is None or not cache_plan.store_wanted:
        return
    await rc.response_cache(services).store_entry(
        cache_plan,
        rc.CacheEntry(
            origin_request_id=admitted.request_id,
            model=served.spec.name,
            provider=served.spec.provider,
            **entry,
        ),
    )
