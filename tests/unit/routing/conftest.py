from __future__ import annotations

import pytest

from domain.catalog import Catalog
from gateway.providers.base import ProviderEndpoint
from gateway.routing.router import Router
from tests.support.routing import router_over

# One endpoint per provider, two OpenAI keys, Bedrock in Frankfurt, Stockholm AND us-east-1:
# the US Bedrock endpoint is the trap the region pin must avoid for EU models.
ALL_ENDPOINTS: tuple[ProviderEndpoint, ...] = (
    ProviderEndpoint("openai", "https://openai.test/v1"),
    ProviderEndpoint("openai", "https://openai.test/v1", name="key2"),
    ProviderEndpoint("anthropic", "https://anthropic.test"),
    ProviderEndpoint("mistral", "https://mistral.test"),
    ProviderEndpoint("google", "https://google.test"),
    ProviderEndpoint("cohere", "https://cohere.test"),
    ProviderEndpoint("moonshot", "https://moonshot.test"),
    ProviderEndpoint("xai", "https://xai.test"),
    ProviderEndpoint("bedrock", "https://bedrock.test", region="eu-central-1", name="frankfurt"),
    ProviderEndpoint("bedrock", "https://bedrock.test", region="eu-north-1", name="stockholm"),
    ProviderEndpoint("bedrock", "https://bedrock.test", region="us-east-1", name="virginia"),
)


@pytest.fixture
def catalog() -> Catalog:
    return Catalog.shipped()


def make_router(seed: int = 1, endpoints: tuple[ProviderEndpoint, ...] = ALL_ENDPOINTS) -> Router:
    return router_over(endpoints, seed)


@pytest.fixture
def router() -> Router:
    return make_router()
