"""One rule for "did this failure count against the endpoint": the breaker and failover
(gateway/routing/failover.py) and the router statistics (projections/router_stats.py) both
read domain/routing.py's."""

from __future__ import annotations

import pytest

from domain.routing import counts_as_endpoint_failure
from gateway.providers.base import UpstreamError
from gateway.routing import failover
from projections import router_stats


@pytest.mark.parametrize(
    ("status", "counts"),
    [(500, True), (502, True), (503, True), (429, True), (400, False), (404, False),
     (499, False), (422, False)],
)  # fmt: skip
def test_a_5xx_or_429_counts_and_a_client_error_does_not(status: int, counts: bool) -> None:
    assert counts_as_endpoint_failure(status) is counts


def test_a_retryable_error_counts_and_the_gateways_own_pool_never_does() -> None:
    assert counts_as_endpoint_failure(400, retryable=True) is True
    assert counts_as_endpoint_failure(503, local=True) is False
    assert counts_as_endpoint_failure(429, retryable=True, local=True) is False


def test_the_gateway_and_the_router_statistics_read_the_same_rule() -> None:
    assert router_stats.counts_as_endpoint_failure is counts_as_endpoint_failure

    def upstream(status: int, **flags: bool) -> UpstreamError:
        return UpstreamError(status=status, code="x", message="x", provider="openai", **flags)

    for status in (400, 429, 499, 500, 503):
        assert failover.counts_as_endpoint_failure(upstream(status)) is (
            counts_as_endpoint_failure(status)
        )
    assert failover.counts_as_endpoint_failure(upstream(503, local=True)) is False
    assert failover.counts_as_endpoint_failure(upstream(408, retryable=True)) is True
