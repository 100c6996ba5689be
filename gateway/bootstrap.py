"""Wires the parts together: one place that builds the event store, the group-commit
writer, the read store, the projection runner, the caches and the provider adapters."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from domain.application import LedgerApplication, is_postgres_url, open_application
from domain.clock import Clock, SystemClock
from gateway.cache import AggregateCache
from gateway.config import Settings
from gateway.credentials import CredentialSigner, attach_credentials
from gateway.event_store import RECORDER_TOPIC
from gateway.fairness import ProjectInflight
from gateway.observability.core import Observability
from gateway.observability.writer import ObservedWriter
from gateway.pii.service import PiiService
from gateway.providers.base import AdapterLimits, ProviderAdapter, ProviderEndpoint
from gateway.providers.registry import (
    ADAPTER_CLASSES,
    build_adapter,
    build_client,
    endpoints_from_env,
)
from gateway.relay import OutboxRelay
from gateway.response_cache import ResponseCacheStore, build_response_cache
from gateway.routing.service import RoutingService
from gateway.routing.wiring import (
    adapter_factory,
    build_routing,
    seed_catalog_prices,
    warm_statistics,
)
from gateway.test_mode import build_simulator_adapter
from gateway.warmup import WarmUp
from gateway.workers import WarmMarkers
from gateway.write_locks import locks_for
from projections.db import ReadStore
from projections.runner import ProjectionRunner, default_views

if TYPE_CHECKING:
    from gateway.audit import AuditService
    from gateway.lifecycle.settlement import RequestLeases

log = logging.getLogger("ledgergate")


def adapter_classes() -> dict[str, type[ProviderAdapter]]:
    return dict(ADAPTER_CLASSES)


@dataclass
class Services:
    settings: Settings
    clock: Clock
    app: LedgerApplication
    writer: ObservedWriter
    store: ReadStore
    runner: ProjectionRunner
    cache: AggregateCache
    routing: RoutingService
    limits: AdapterLimits = field(default_factory=AdapterLimits)
    inflight: ProjectInflight = field(default_factory=lambda: ProjectInflight(50))
    http_client: httpx.AsyncClient | None = None
    adapters: dict[str, ProviderAdapter] = field(default_factory=dict)
    started: bool = False
    relay: OutboxRelay | None = None  # when LEDGERGATE_RUN_RELAY=1
    # The process-wide parts, built once in build_services (init=False: they need the
    # services above). A test may replace one before the app is created.
    pii: PiiService = field(init=False)
    leases: RequestLeases = field(init=False)
    response_cache: ResponseCacheStore = field(init=False)
    observability: Observability = field(init=False)
    simulator: ProviderAdapter = field(init=False)  # test mode's OpenAI-format adapter
    # Built on first use (gateway/audit.py `audit_service`), not here: building it makes the
    # audit signing key file, which a CLI read or a verification must not do.
    audit: AuditService | None = None
    # Temporary credentials' signer (gateway/credentials.py); None: credentials are off.
    credential_signer: CredentialSigner | None = None
    # The first-request warm-up (gateway/warmup.py), run by the app's lifespan; and with
    # `serve --workers N`, which of the N workers are warm (gateway/workers.py).
    warm_up: WarmUp = field(default_factory=WarmUp)
    warm_markers: WarmMarkers | None = None

    def start(self) -> None:
        """Synchronous parts: schema, writer thread, projections caught up and following."""
        if self.started:
            return
        self.store.migrate()
        self.writer.start()
        self.runner.catch_up()
        if self.settings.seed_catalog_prices:
            seed_catalog_prices(self.routing, self.app, self.writer.submit)
        warm_statistics(self.routing, self.store)
        self.runner.start()  # writes the views, or only follows the log (run_projections off)
        self._start_relay()
        self.started = True

    def _start_relay(self) -> None:
        """The optional in-serve Kafka relay: off by default, on with LEDGERGATE_RUN_RELAY=1
        (then LEDGERGATE_KAFKA_BOOTSTRAP is required). Every worker may run one; a lock in
        the database keeps exactly one publishing."""
        if self.relay is not None or not self.settings.run_relay:
            return
        self.relay = OutboxRelay(self.app.recorder, self.store, self.settings.kafka).start()

    async def start_async(self) -> None:
        self.start()
        if self.http_client is None:
            self.http_client = build_client(self.limits)
            self.adapters = build_adapters(self.settings, self.http_client)
            self.routing.bind_adapters(
                adapter_factory(adapter_classes(), self.http_client), self.http_client
            )

    async def aclose(self) -> None:
        if self.http_client is not None:
            await self.http_client.aclose()
            self.http_client = None
        self.close()

    def close(self) -> None:
        if self.relay is not None:
            self.relay.stop()
            self.relay = None
        self.runner.stop()
        self.writer.stop()
        self.store.close()
        self.app.close()
        self.started = False

    def on_saved(self, _position: int, events: list[Any]) -> None:
        """This process's writer has just recorded `events` (its saver thread, before any
        caller is answered): its own caches drop what it changed, at once and without reading
        the log back. Only when the views are projected here is the runner poked, so they
        follow within milliseconds; when the projection worker writes them, this process's
        follower needs to read only what other processes record, on its poll interval: it
        used to read every one of its own commits straight back (a query and a pass over
        its events per commit, ~1 ms of CPU per request at concurrency 1)."""
        for event in events:
            self.cache.evict(event.originator_id, event.originator_version)
            self.routing.project_routing.evict(event.originator_id)
        if self.runner.views:
            self.runner.poke()

    def on_notification(self, aggregate_id: Any, version: int) -> None:
        """Every event recorded by any process (the runner's own follower pass, independent
        of who projected it), as its aggregate id and version: drop stale cached copies. The
        aggregate cache holds keys, projects (plan, tier, fee, provider keys), price and FX
        books; the writer holds the aggregates it decides on; the routing cache holds custom
        models and endpoints."""
        self.cache.evict(aggregate_id, version)
        self.writer.evict(aggregate_id, version)
        self.routing.project_routing.evict(aggregate_id)


def endpoints_from_settings(settings: Settings) -> dict[str, ProviderEndpoint]:
    """All eight providers, from LEDGERGATE_<P>_BASE_URL / _API_KEY (+ LEDGERGATE_BEDROCK_REGION);
    Bedrock may also be configured by the standard AWS_* credentials alone (SigV4)."""
    return endpoints_from_env({**settings.aws_environment, **settings.raw})


def build_adapters(settings: Settings, client: httpx.AsyncClient) -> dict[str, ProviderAdapter]:
    return {
        name: build_adapter(name, endpoint, client)
        for name, endpoint in endpoints_from_settings(settings).items()
    }


def build_services(settings: Settings | None = None, clock: Clock | None = None) -> Services:
    settings = settings or Settings.from_env()
    clock = clock or SystemClock()
    # On PostgreSQL the serving writer records each group commit in one round trip
    # (gateway/event_store.py); SQLite keeps the library's recorder.
    recorder = (
        {"APPLICATION_RECORDER_TOPIC": RECORDER_TOPIC}
        if is_postgres_url(settings.database_url)
        else {}
    )
    app = open_application(settings.database_url, settings.data_dir, **recorder)
    store = ReadStore(settings.database_url, settings.data_dir)
    cache = AggregateCache(app)
    services_ref: list[Services] = []

    def on_notification(aggregate_id: Any, version: int) -> None:
        services_ref[0].on_notification(aggregate_id, version)

    def on_saved(position: int, events: list[Any]) -> None:
        services_ref[0].on_saved(position, events)

    views = default_views() if settings.run_projections else []
    runner = ProjectionRunner(app, store, views, on_notification=on_notification)
    # Several processes on one PostgreSQL take turns on a hot Account instead of colliding
    # (gateway/write_locks.py); SQLite has one serving process and needs none.
    writer = ObservedWriter(
        app,
        clock=clock,
        on_saved=on_saved,
        locks=locks_for(settings.database_url),
    )
    routing = build_routing(
        list(endpoints_from_settings(settings).values()), settings.raw, clock, writer.submit
    )
    services = Services(
        settings=settings,
        clock=clock,
        app=app,
        writer=writer,
        store=store,
        runner=runner,
        cache=cache,
        routing=routing,
        limits=AdapterLimits(
            max_connections=settings.upstream_connections_max,
            max_keepalive_connections=min(50, settings.upstream_connections_max),
        ),
        inflight=ProjectInflight(settings.project_inflight_max),
    )
    services.credential_signer = CredentialSigner.from_settings(settings)
    services.warm_markers = WarmMarkers.from_settings(settings.raw)
    # Every surface that authenticates an API key takes a temporary credential too.
    attach_credentials(services)
    services_ref.append(services)
    from gateway.lifecycle.settlement import RequestLeases  # the lifecycle imports Services

    services.pii = PiiService.from_settings(settings.raw)
    services.leases = RequestLeases(services)
    services.response_cache = build_response_cache(services)
    services.observability = Observability.for_services(services)
    services.simulator = build_simulator_adapter(services.limits)
    return services
