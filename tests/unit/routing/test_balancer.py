from __future__ import annotations

from collections import Counter

from domain.catalog import Catalog
from gateway.providers.base import ProviderEndpoint
from gateway.routing.balancer import EndpointPool, endpoint_serves
from gateway.routing.breaker import BreakerBoard


def openai_pool(board: BreakerBoard) -> EndpointPool:
    return EndpointPool(
        board,
        [ProviderEndpoint("openai", "https://o.test", name=f"key{index}") for index in range(3)],
    )


def test_traffic_is_spread_evenly_across_keys(catalog: Catalog) -> None:
    pool = openai_pool(BreakerBoard())
    spec = catalog.require("gpt-5")
    used = Counter(pool.ordered(spec)[0].key for _ in range(300))
    assert used == {"openai:key0": 100, "openai:key1": 100, "openai:key2": 100}


def test_an_endpoint_with_an_open_breaker_gets_no_traffic(catalog: Catalog) -> None:
    board = BreakerBoard()
    pool = openai_pool(board)
    for _ in range(5):
        board.get("openai:key1").record_failure()
    spec = catalog.require("gpt-5")
    used = Counter(pool.ordered(spec)[0].key for _ in range(100))
    assert "openai:key1" not in used and sum(used.values()) == 100


def test_an_endpoint_allow_list_restricts_the_models_it_serves(catalog: Catalog) -> None:
    pool = EndpointPool(BreakerBoard())
    pool.add(ProviderEndpoint("openai", "https://o.test", name="mini-only"), models=["gpt-5-mini"])
    assert pool.ordered(catalog.require("gpt-5")) == []
    assert [p.key for p in pool.ordered(catalog.require("gpt-5-mini"))] == ["openai:mini-only"]


def test_region_pinned_models_need_an_endpoint_in_their_region(catalog: Catalog) -> None:
    frankfurt = catalog.require("claude-sonnet-eu")
    assert endpoint_serves(
        frankfurt, ProviderEndpoint("bedrock", "https://b", region="eu-central-1")
    )
    assert not endpoint_serves(
        frankfurt, ProviderEndpoint("bedrock", "https://b", region="us-east-1")
    )
    assert not endpoint_serves(frankfurt, ProviderEndpoint("bedrock", "https://b", region=None))
    assert not endpoint_serves(
        catalog.require("nova-lite-sweden"),
        ProviderEndpoint("bedrock", "https://b", region="eu-central-1"),
    )


def test_a_projects_own_endpoint_is_eligible_only_for_that_project(catalog: Catalog) -> None:
    pool = EndpointPool(BreakerBoard())
    pool.add(ProviderEndpoint("openai", "https://shared.test"))
    pool.add(ProviderEndpoint("openai", "https://acme.test", name="acme"), project="p-acme")
    spec = catalog.require("gpt-5")
    assert {p.key for p in pool.eligible(spec, "p-acme")} == {"openai:default", "openai:acme"}
    assert {p.key for p in pool.eligible(spec, "p-other")} == {"openai:default"}
    assert {p.key for p in pool.eligible(spec)} == {"openai:default"}
