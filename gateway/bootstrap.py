"""Wires the parts together: one place that builds the event store, the group-commit
writer, the read store, the projection runner, the caches and the provider adapters."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import httpx

from domain.application import LedgerApplication, open_application
from domain.clock import Clock, SystemClock
from domain.writer import GroupCommitWriter
from gateway.cache import AggregateCache
from gateway.config import Settings
from gateway.providers.base import AdapterLimits, ProviderAdapter, ProviderEndpoint
from projections.db import ReadStore
from projections.runner import ProjectionRunner, default_views

log = logging.getLogger("ledgergate")

DEFAULT_BASE_URLS = {"openai": "https://api.openai.com/v1"}


def adapter_classes() -> dict[str, type[ProviderAdapter]]:
    from gateway.providers.openai import OpenAIAdapter

    return {"openai": OpenAIAdapter}


@dataclass
class Services:
    settings: Settings
    clock: Clock
    app: LedgerApplication
    writer: GroupCommitWriter
    store: ReadStore
    runner: ProjectionRunner
    cache: AggregateCache
    limits: AdapterLimits = field(default_factory=AdapterLimits)
    http_client: httpx.AsyncClient | None = None
    adapters: dict[str, ProviderAdapter] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    started: bool = False

    def start(self) -> None:
        """Synchronous parts: schema, writer thread, projections caught up and following."""
        if self.started:
            return
        self.store.migrate()
        self.writer.start()
        self.runner.catch_up()
        if self.settings.run_projections:
            self.runner.start()
        self.started = True

    async def start_async(self) -> None:
        self.start()
        if self.http_client is None:
            self.http_client = httpx.AsyncClient(
                timeout=self.limits.httpx_timeout(),
                limits=httpx.Limits(
                    max_connections=self.limits.max_connections,
                    max_keepalive_connections=self.limits.max_keepalive_connections,
                ),
            )
            self.adapters = build_adapters(self.settings, self.http_client)

    async def aclose(self) -> None:
        if self.http_client is not None:
            await self.http_client.aclose()
            self.http_client = None
        self.close()

    def close(self) -> None:
        self.runner.stop()
        self.writer.stop()
        self.store.close()
        self.app.close()
        self.started = False

    def on_notification(self, event: Any) -> None:
        """Every event the runner sees: drop stale cached copies (other processes write too)."""
        self.cache.evict(event.originator_id, event.originator_version)
        self.writer.evict(event.originator_id, event.originator_version)


def endpoints_from_settings(settings: Settings) -> dict[str, ProviderEndpoint]:
    endpoints: dict[str, ProviderEndpoint] = {}
    for provider in adapter_classes():
        base_url = settings.provider_base_urls.get(provider)
        api_key = settings.provider_api_keys.get(provider)
        if base_url is None and api_key is not None:
            base_url = DEFAULT_BASE_URLS.get(provider)
        if base_url:
            endpoints[provider] = ProviderEndpoint(
                provider=provider, base_url=base_url, api_key=api_key
            )
    return endpoints


def build_adapters(settings: Settings, client: httpx.AsyncClient) -> dict[str, ProviderAdapter]:
    classes = adapter_classes()
    return {
        name: classes[name](endpoint, client)
        for name, endpoint in endpoints_from_settings(settings).items()
    }


def build_services(settings: Settings | None = None, clock: Clock | None = None) -> Services:
    settings = settings or Settings.from_env()
    clock = clock or SystemClock()
    app = open_application(settings.database_url, settings.data_dir)
    store = ReadStore(settings.database_url, settings.data_dir)
    cache = AggregateCache(app)
    services_ref: list[Services] = []

    def on_notification(event: Any) -> None:
        services_ref[0].on_notification(event)

    runner = ProjectionRunner(app, store, default_views(), on_notification=on_notification)
    writer = GroupCommitWriter(app, clock=clock, on_saved=lambda _position: runner.poke())
    services = Services(
        settings=settings,
        clock=clock,
        app=app,
        writer=writer,
        store=store,
        runner=runner,
        cache=cache,
    )
    services_ref.append(services)
    return services
