"""Payloads of GET /v1/models and GET /v1/models/leaderboard (pure functions, no HTTP).

`/v1/models` is OpenAI's list shape (`object: "list"`, entries `object: "model"`, `id`,
`created`, `owned_by`) with Ledgergate fields beside them, so the openai SDK still parses it.
Only models the caller's effective tier allows are listed; money is strings.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.catalog import Catalog, ModelPrice, ModelSpec
from domain.errors import PriceNotFound
from domain.tiers import TIER_ORDER, EffectiveTier
from gateway.routing.router import Router


def _price_fields(price: ModelPrice) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "currency": price.currency,
        "input_per_million": format(price.input_per_million, "f"),
        "output_per_million": format(price.output_per_million, "f"),
        "effective_from": price.effective_from.isoformat(),
    }
    if price.cached_input_per_million is not None:
        fields["cached_input_per_million"] = format(price.cached_input_per_million, "f")
    if price.per_page is not None:
        fields["per_page"] = format(price.per_page, "f")
    return fields


def model_entry(spec: ModelSpec, at: datetime) -> dict[str, Any]:
    try:
        price: dict[str, Any] | None = _price_fields(spec.price_at(at))
    except PriceNotFound:
        price = None  # announced but not yet priced: listed, and the router cannot charge it
    return {
        "id": spec.name,
        "object": "model",
        "created": int(spec.prices[0].effective_from.timestamp()),
        "owned_by": spec.provider,
        "aliases": list(spec.aliases),
        "provider": spec.provider,
        "upstream_id": spec.upstream_id,
        "capabilities": sorted(spec.capabilities),
        "size_class": spec.size_class,
        "regions": list(spec.regions),
        "tiers": [tier.value for tier in TIER_ORDER if tier in spec.tiers],
        "named_only": spec.named_only,
        "context_window": spec.context_window,
        "max_output_tokens": spec.max_output_tokens,
        "pricing": price,
        "source": spec.source,
    }


def models_listing(catalog: Catalog, effective: EffectiveTier, at: datetime) -> dict[str, Any]:
    """What GET /v1/models answers: the models this caller's tier allows."""
    return {
        "object": "list",
        "tier": effective.label,
        "data": [model_entry(spec, at) for spec in catalog.in_tier(effective)],
    }


def leaderboard_payload(
    router: Router, effective: EffectiveTier, catalog: Catalog | None = None
) -> dict[str, Any]:
    """What GET /v1/models/leaderboard answers: live statistics of the models this caller's
    tier allows (statistics of other models are not the caller's business)."""
    active = catalog or router.catalog
    allowed = {spec.name for spec in active.in_tier(effective)}
    rows = [row for row in router.leaderboard(active) if row["model"] in allowed]
    return {
        "object": "list",
        "tier": effective.label,
        "observations": router.stats.observations,
        "half_life_observations": router.stats.half_life_observations,
        "data": rows,
        "breakers": [
            snapshot
            for snapshot in router.board.snapshot()
            if snapshot["endpoint"].split(":", 1)[0]
            in {spec.provider for spec in active.models if spec.name in allowed}
        ],
    }


def catalog_price_rows(catalog: Catalog) -> list[dict[str, Any]]:
    """Every shipped price row, for seeding effective-dated price events (one PriceBook per
    model in domain/pricing.py). Idempotent seeding skips rows whose (model, effective_from)
    is already recorded."""
    rows: list[dict[str, Any]] = []
    for spec in catalog.models:
        for price in spec.prices:
            rows.append(
                {
                    "model": spec.name,
                    "effective_from": price.effective_from,
                    "currency": price.currency,
                    "input_per_mtok": price.input_per_million,
                    "output_per_mtok": price.output_per_million,
                    "cached_input_per_mtok": price.cached_input_per_million,
                    "per_page": price.per_page,
                }
            )
    return rows
