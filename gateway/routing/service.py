"""The router as the gateway uses it: one per process, wired in gateway/bootstrap.py.

Holds the Router (statistics, breakers, endpoint pool), one adapter per endpoint, the
per-project catalogs (shipped + custom models from ProjectRouting events), and turns breaker
state changes into RecordBreakerTransition commands for the writer.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any
from uuid import UUID

from domain.catalog import Catalog
from domain.routing import ProjectRouting
from domain.routing_handlers import RecordBreakerTransition
from gateway.providers.base import ProviderAdapter, ProviderEndpoint
from gateway.routing.balancer import EndpointPool
from gateway.routing.breaker import BreakerBoard, BreakerConfig, BreakerTransition
from gateway.routing.decision import RouteTarget
from gateway.routing.router import Router
from gateway.routing.stats import Outcome, RouterStatistics

log = logging.getLogger("ledgergate.routing")
PROJECT_ROUTING_TTL_S = 5.0  # a custom model added on another process shows up within this

AdapterFactory = Callable[[ProviderEndpoint], ProviderAdapter | None]
CATALOGS_CACHED_MAX = 10_000


class RoutingService:
    def __init__(
        self,
        endpoints: Iterable[ProviderEndpoint],
        *,
        catalog: Catalog | None = None,
        clock: Any = None,
        rng: random.Random | None = None,
        breaker_config: BreakerConfig | None = None,
    ) -> None:
        self.catalog = catalog or Catalog.shipped()
        self.board = BreakerBoard(config=breaker_config, clock=clock)
        self.pool = EndpointPool(self.board)
        for endpoint in endpoints:
            self.pool.add(endpoint)
        self.router = Router(
            self.catalog, board=self.board, pool=self.pool, stats=RouterStatistics(), rng=rng
        )
        self._adapters: dict[str, ProviderAdapter] = {}
        self._adapter_factory: AdapterFactory | None = None
        self._http_client: Any = None
        self._catalogs: dict[tuple[UUID, int], Catalog] = {}
        self.project_routing = ProjectRoutingCache()
        self._synced_versions: dict[str, tuple[int, Any]] = {}
        self._lock = threading.Lock()

    # ---- wiring

    def bind_adapters(self, factory: AdapterFactory, http_client: Any = None) -> None:
        """Called once the HTTP client exists (Services.start_async)."""
        self._adapter_factory = factory
        self._http_client = http_client
        self._adapters.clear()

    def ocr_client(self) -> Any:
        """The pooled HTTP client adapters use (bound at start), for Mistral OCR calls."""
        if self._http_client is None:
            raise RuntimeError("the routing service has no HTTP client yet (not started)")
        return self._http_client

    def adapter_for(self, target: RouteTarget) -> ProviderAdapter | None:
        key = target.endpoint_key
        adapter = self._adapters.get(key)
        if adapter is None and self._adapter_factory is not None:
            adapter = self._adapter_factory(target.endpoint)
            if adapter is not None:
                self._adapters[key] = adapter
        return adapter

    def add_endpoint(
        self, endpoint: ProviderEndpoint, models: Iterable[str] = (), project: str | None = None
    ) -> None:
        self.pool.add(endpoint, models, project)

    def sync_project_endpoints(
        self,
        routing: ProjectRouting | None,
        resolve_key: Callable[[str, str], str | None] | None = None,
    ) -> None:
        """Put a project's own endpoints (EndpointAdded events) in the pool, restricted to that
        project; drop removed ones. `resolve_key(api_key_ref, provider)` turns a
        `byok:<provider>` reference into the project's own stored key (gateway/byok.py);
        nothing here reads the server's environment. An endpoint whose reference does not
        resolve (a legacy environment name, a key that cannot be decrypted) is left out, so
        its models fail cleanly instead of being sent anywhere with some other credential.
        Cheap when the aggregate has not changed (`resolve_key` keys the cache with the
        project's own version, so a new or removed provider key re-syncs)."""
        if routing is None:
            return
        project = routing.project_id
        version = (routing.version, getattr(resolve_key, "version", None))
        with self._lock:
            if self._synced_versions.get(project) == version:
                return
            self._synced_versions[project] = version
        wanted = {}
        for entry in routing.endpoints():
            name = f"p{project.replace('-', '')[:8]}-{entry['name']}"
            api_key = None
            if entry["api_key_ref"]:
                api_key = (
                    resolve_key(entry["api_key_ref"], entry["provider"]) if resolve_key else None
                )
                if api_key is None:
                    log.warning(
                        "project %s endpoint %s left out: its api_key_ref names no key stored "
                        "for the project",
                        project,
                        entry["name"],
                    )
                    continue
            wanted[(entry["provider"], name)] = (
                ProviderEndpoint(
                    provider=entry["provider"],
                    base_url=entry["base_url"],
                    api_key=api_key,
                    region=entry["region"] or None,
                    name=name,
                ),
                entry["models"],
            )
        present = {
            (pooled.endpoint.provider, pooled.endpoint.name): pooled
            for pooled in self.pool.endpoints()
            if pooled.project == project
        }
        for provider, name in set(present) - set(wanted):
            self.pool.remove(provider, name)
        for key, (endpoint, models) in wanted.items():
            pooled = present.get(key)
            if pooled is not None and pooled.endpoint == endpoint:
                continue
            if pooled is not None:  # its key changed: replace it and its adapter
                self.pool.remove(*key)
                self._adapters.pop(pooled.key, None)
            self.pool.add(endpoint, models, project)

    def report_breakers_to(self, submit: Callable[[Any], Any]) -> None:
        """Every live breaker transition becomes a command for the writer (not awaited: the
        request that tripped the breaker must not wait on the event store)."""

        def on_change(transition: BreakerTransition) -> None:
            log.warning(
                "breaker %s: %s -> %s (%s)",
                transition.endpoint_key,
                transition.from_state,
                transition.to_state,
                transition.reason,
            )
            try:
                submit(
                    RecordBreakerTransition(
                        endpoint_key=transition.endpoint_key,
                        to_state=transition.to_state,
                        reason=transition.reason,
                        observed_at=transition.at,
                        failures_in_window=transition.failures_in_window,
                        requests_in_window=transition.requests_in_window,
                        consecutive_failures=transition.consecutive_failures,
                        cooldown_s=Decimal(str(transition.cooldown_s)),
                        probe_successes=transition.probe_successes,
                    )
                )
            except Exception:  # a stopped writer must not break the request path
                log.exception("could not record breaker transition of %s", transition.endpoint_key)

        self.board.subscribe(on_change)

    # ---- per-project catalogs

    def catalog_for(self, routing: ProjectRouting | None) -> Catalog:
        """Shipped catalog plus the project's custom models (cached per aggregate version)."""
        if routing is None:
            return self.catalog
        key = (routing.id, routing.version)
        with self._lock:
            cached = self._catalogs.get(key)
        if cached is not None:
            return cached
        custom = routing.custom_models()
        catalog = self.catalog.with_models(*custom) if custom else self.catalog
        with self._lock:
            if len(self._catalogs) >= CATALOGS_CACHED_MAX:
                self._catalogs.clear()
            self._catalogs[key] = catalog
        return catalog

    async def project_catalog(
        self, project_id: UUID, load: Callable[[UUID], Awaitable[Any]]
    ) -> Catalog:
        """The catalog a project sees: catalog_for its ProjectRouting (read through the
        TTL cache with `load`, e.g. services.cache.get)."""
        return self.catalog_for(await self.project_routing.get(project_id, load))

    # ---- statistics

    def load_outcomes(self, outcomes: Iterable[Outcome]) -> int:
        """Warm the in-memory statistics from the router-statistics projection at start."""
        count = 0
        for outcome in outcomes:
            self.router.stats.record(outcome)
            count += 1
        return count


class ProjectRoutingCache:
    """ProjectRouting per project with a short TTL: most projects have none, and the
    aggregate cache does not remember misses, so without this every request would read the
    event store for an aggregate that does not exist."""

    def __init__(self, ttl_s: float = PROJECT_ROUTING_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[UUID, tuple[float, ProjectRouting | None]] = {}
        self._project_of_routing: dict[UUID, UUID] = {}  # aggregate id -> project id

    async def get(
        self, project_id: UUID, load: Callable[[UUID], Awaitable[Any]]
    ) -> ProjectRouting | None:
        now = time.monotonic()
        entry = self._entries.get(project_id)
        if entry is not None and now - entry[0] < self.ttl_s:
            return entry[1]
        routing_id = ProjectRouting.create_id(str(project_id))
        found = await load(routing_id)
        routing = found if isinstance(found, ProjectRouting) else None
        if len(self._entries) > 100_000:
            self._entries.clear()
            self._project_of_routing.clear()
        self._entries[project_id] = (now, routing)
        self._project_of_routing[routing_id] = project_id
        return routing

    def invalidate(self, project_id: UUID) -> None:
        self._entries.pop(project_id, None)

    def evict(self, aggregate_id: UUID) -> None:
        """An event of some aggregate was recorded (by any process): if it is a project's
        ProjectRouting (a custom model or endpoint changed), forget that project's entry,
        including a cached "none yet"."""
        project_id = self._project_of_routing.get(aggregate_id)
        if project_id is not None:
            self._entries.pop(project_id, None)


def catalog_price_commands(
    catalog: Catalog, existing: Mapping[str, set[Any]]
) -> list[dict[str, Any]]:
    """Shipped price rows not yet recorded as price events. `existing` maps a model to the
    effective_from instants its PriceBook already has, so seeding twice adds nothing."""
    rows = []
    for spec in catalog.models:
        for price in spec.prices:
            if price.effective_from in existing.get(spec.name, set()):
                continue
            rows.append(
                {
                    "model": spec.name,
                    "input_per_mtok": price.input_per_million,
                    "output_per_mtok": price.output_per_million,
                    "cached_input_per_mtok": price.cached_input_per_million,
                    "currency": price.currency,
                    "effective_from": price.effective_from,
                    "source": "catalog",
                }
            )
    return rows
