"""Load balancing across several endpoints or keys that serve the same model.

An endpoint serves a model only if the provider matches, the model is on the endpoint's
allow-list (when it has one) and, for region-pinned models (every Bedrock model), the endpoint
is in one of the model's regions. That last rule is a compliance rule, not a preference: a
Frankfurt model must never be sent to a us-east-1 endpoint, so it is checked here, where
endpoints are chosen, and the property tests check it again.

A project's custom model is served only by the endpoints that project registered: a
residency rule as well (a private on-prem model must never reach a shared public endpoint,
not on load balancing, not on failover), checked here for the same reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from domain.catalog import ModelSpec
from domain.routing import endpoint_key
from gateway.providers.base import ProviderEndpoint
from gateway.routing.breaker import BreakerBoard


@dataclass(frozen=True, slots=True)
class PooledEndpoint:
    endpoint: ProviderEndpoint
    models: frozenset[str] = frozenset()  # empty: any model of the provider
    project: str | None = None  # a project's own endpoint serves only that project

    @property
    def key(self) -> str:
        return endpoint_key(self.endpoint.provider, self.endpoint.name)


CUSTOM_SOURCE_PREFIX = "custom:"


def owning_project(spec: ModelSpec) -> str | None:
    """The project a custom model belongs to (None for shipped catalog models)."""
    if spec.source.startswith(CUSTOM_SOURCE_PREFIX):
        return spec.source[len(CUSTOM_SOURCE_PREFIX) :]
    return None


def endpoint_serves(
    spec: ModelSpec,
    endpoint: ProviderEndpoint,
    models: frozenset[str] = frozenset(),
    endpoint_project: str | None = None,
) -> bool:
    owner = owning_project(spec)
    if owner is not None and endpoint_project != owner:
        return False  # residency: only the owning project's own endpoints
    if endpoint.provider != spec.provider:
        return False
    if models and spec.name not in models:
        return False
    if spec.pin_region and endpoint.region not in spec.regions:
        return False
    return True


class EndpointPool:
    def __init__(self, board: BreakerBoard, endpoints: Iterable[ProviderEndpoint] = ()) -> None:
        self.board = board
        self._pooled: dict[str, PooledEndpoint] = {}
        self._by_provider: dict[str, list[PooledEndpoint]] = {}
        self._round_robin: dict[str, int] = {}
        self._eligible_cache: dict[tuple[str, str | None], tuple[PooledEndpoint, ...]] = {}
        for endpoint in endpoints:
            self.add(endpoint)

    def add(
        self, endpoint: ProviderEndpoint, models: Iterable[str] = (), project: str | None = None
    ) -> None:
        pooled = PooledEndpoint(
            endpoint, frozenset(name.strip().lower() for name in models), project
        )
        if pooled.key in self._pooled:
            raise ValueError(f"endpoint {pooled.key} is already in the pool")
        self._pooled[pooled.key] = pooled
        self._by_provider.setdefault(endpoint.provider, []).append(pooled)
        self._eligible_cache.clear()

    def remove(self, provider: str, name: str) -> None:
        key = endpoint_key(provider, name)
        pooled = self._pooled.pop(key, None)
        if pooled is not None:
            self._by_provider[provider].remove(pooled)
            self._eligible_cache.clear()

    def endpoints(self) -> tuple[PooledEndpoint, ...]:
        return tuple(self._pooled.values())

    def eligible(self, spec: ModelSpec, project: str | None = None) -> tuple[PooledEndpoint, ...]:
        """Every endpoint allowed to serve the model for this project (shared endpoints and
        the project's own), breakers ignored; cached per (model, project)."""
        cache_key = (spec.name, project)
        cached = self._eligible_cache.get(cache_key)
        if cached is None:
            cached = tuple(
                pooled
                for pooled in self._by_provider.get(spec.provider, ())
                if (pooled.project is None or pooled.project == project)
                and endpoint_serves(spec, pooled.endpoint, pooled.models, pooled.project)
            )
            self._eligible_cache[cache_key] = cached
        return cached

    def ordered(self, spec: ModelSpec, project: str | None = None) -> list[PooledEndpoint]:
        """Endpoints to try for this model, open breakers left out, rotated round-robin so
        traffic spreads across keys; the first is the one to use, the rest are failover."""
        eligible = [
            pooled for pooled in self.eligible(spec, project) if self.board.available(pooled.key)
        ]
        if len(eligible) > 1:
            turn = self._round_robin.get(spec.name, 0)
            self._round_robin[spec.name] = turn + 1
            start = turn % len(eligible)
            eligible = eligible[start:] + eligible[:start]
        return eligible
