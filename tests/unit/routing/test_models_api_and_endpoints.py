from __future__ import annotations

import json
from datetime import UTC, datetime

from domain.catalog import Catalog
from domain.tiers import effective_tier
from gateway.providers.base import ProviderEndpoint
from gateway.routing.endpoints import describe, expand_endpoints
from gateway.routing.models_api import catalog_price_rows, leaderboard_payload, models_listing
from gateway.routing.router import Router

NOW = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def test_the_model_list_shows_only_what_the_tier_allows(catalog: Catalog) -> None:
    listing = models_listing(catalog, effective_tier("eu_strict"), NOW)
    ids = {entry["id"] for entry in listing["data"]}
    assert ids and all(catalog.require(i).provider == "mistral" for i in ids)
    assert listing["object"] == "list" and listing["tier"] == "eu_strict"


def test_the_model_list_is_openai_shaped_and_carries_money_as_strings(catalog: Catalog) -> None:
    listing = models_listing(catalog, effective_tier("unrestricted"), NOW)
    entry = next(e for e in listing["data"] if e["id"] == "gpt-5")
    assert (entry["object"], entry["owned_by"]) == ("model", "openai")
    assert isinstance(entry["created"], int)
    assert entry["pricing"]["input_per_million"] == "1.25"
    json.dumps(listing)  # serialisable as is: no Decimal, no datetime


def test_the_leaderboard_hides_statistics_of_models_outside_the_tier(router: Router) -> None:
    for name in ("gpt-5", "mistral-small"):
        target = router.decide(name, effective_tier("unrestricted")).chosen
        router.observe(target, success=True, latency_ms=300.0)
    payload = leaderboard_payload(router, effective_tier("eu_strict"))
    assert [row["model"] for row in payload["data"]] == ["mistral-small"]
    json.dumps(payload)


def test_every_shipped_price_row_is_offered_for_seeding(catalog: Catalog) -> None:
    rows = catalog_price_rows(catalog)
    assert len(rows) == sum(len(spec.prices) for spec in catalog.models)
    assert {row["model"] for row in rows} == set(catalog.names())


def test_extra_keys_become_separately_named_endpoints() -> None:
    base = [ProviderEndpoint("openai", "https://api.openai.com/v1", api_key="k0")]
    expanded = expand_endpoints(base, {"LEDGERGATE_OPENAI_API_KEYS": "k1, k2"})
    assert [(e.name, e.api_key) for e in expanded] == [("default", "k1"), ("key2", "k2")]


def test_bedrock_regions_become_one_endpoint_per_region() -> None:
    base = [ProviderEndpoint("bedrock", "", region="us-east-1")]
    expanded = expand_endpoints(base, {"LEDGERGATE_BEDROCK_REGIONS": "eu-central-1,eu-north-1"})
    assert [(e.name, e.region) for e in expanded] == [
        ("eu-central-1", "eu-central-1"),
        ("eu-north-1", "eu-north-1"),
    ]


def test_a_described_endpoint_never_shows_its_key() -> None:
    text = repr(describe(ProviderEndpoint("openai", "https://o", api_key="sk-secret")))
    assert "sk-secret" not in text
