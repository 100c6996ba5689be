"""What the routing tests and benchmarks build a router from, and the upstream failure the
routing tests and the routing simulation fake."""

from __future__ import annotations

import random

from domain.catalog import Catalog
from gateway.providers.base import ProviderEndpoint, UpstreamError
from gateway.routing.balancer import EndpointPool
from gateway.routing.breaker import BreakerBoard
from gateway.routing.router import Router


def router_over(endpoints: tuple[ProviderEndpoint, ...], seed: int = 1) -> Router:
    """A router over the shipped catalog and `endpoints`, its Thompson draws seeded by `seed`."""
    board = BreakerBoard()
    return Router(
        Catalog.shipped(), board=board, pool=EndpointPool(board, endpoints), rng=random.Random(seed)
    )


def upstream_outage(provider: str = "openai", message: str = "down") -> UpstreamError:
    """`provider`'s retryable 503 `upstream_unavailable`: the failure that fails over."""
    return UpstreamError(
        status=503, code="upstream_unavailable", message=message, provider=provider, retryable=True
    )
