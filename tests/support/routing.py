"""What the routing tests and the routing simulation fake of an upstream."""

from __future__ import annotations

from gateway.providers.base import UpstreamError


def upstream_outage(provider: str = "openai", message: str = "down") -> UpstreamError:
    """`provider`'s retryable 503 `upstream_unavailable`: the failure that fails over."""
    return UpstreamError(
        status=503, code="upstream_unavailable", message=message, provider=provider, retryable=True
    )
