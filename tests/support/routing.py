"""What the routing tests and benchmarks build a router from, and the upstream failure the
routing tests and the routing simulation fake."""

from __future__ import annotations

import random

from domain.catalog import Catalog
from gateway.providers.base import ProviderEndpoint, UpstreamError
from gateway.routing.balancer import EndpointPool
from gateway.routing.breaker import BreakerBoard
from gateway.routing.router import Router

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


def upstream_outage(provider: str = "openai", message: str = "down") -> UpstreamError:
    """`provider`'s retryable 503 `upstream_unavailable`: the failure that fails over."""
    return UpstreamError(
        status=503, code="upstream_unavailable", message=message, provider=provider, retryable=True
    )


def make_router(seed: int = 1, endpoints: tuple[ProviderEndpoint, ...] = ALL_ENDPOINTS) -> Router:
    """A router over the shipped catalog and `endpoints`, its Thompson draws seeded by `seed`."""
    board = BreakerBoard()
    return Router(
        Catalog.shipped(), board=board, pool=EndpointPool(board, endpoints), rng=random.Random(seed)
    )
