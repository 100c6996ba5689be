"""Prometheus metrics of one gateway process (prometheus-client).

Labels are closed sets, so a client can never grow the series count: routes are the app's own
route templates, models the catalog's names, providers the eight known ones, key sources and
cache outcomes fixed lists; anything else is "other". No request id, project, key, actor or
free text is ever a label value.

Registry: one per app (tests build many apps in one process). With
`PROMETHEUS_MULTIPROC_DIR` set before start (`serve --workers N`, later), prometheus-client
keeps counters and histograms in files there and the scrape aggregates every worker's files;
the gauges computed at scrape time (projection lag, breakers) stay this process's view.

Money in a metric is a float: an operational signal, never an amount anyone bills from (the
ledger's ChargePosted events are the money).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from domain import vocabulary
from domain.account import Account
from domain.vocabulary import KNOWN_PROVIDERS

OTHER = "other"
NONE = "none"
KEY_SOURCES = frozenset(vocabulary.KEY_SOURCES)
# X-LG-Cache outcomes: hit, miss, bypass from the response cache (gateway/response_cache.py);
# the semantic cache planned later adds semantic_hit.
CACHE_OUTCOMES = frozenset({"miss", "hit", "semantic_hit", "bypass", "stored"})
BREAKER_STATES = ("closed", "open", "half_open")
UPSTREAM_OUTCOMES = frozenset({"ok", "failed", "client_error", "timeout", "skipped", "cancelled"})

# Seconds. Gateway latency spans fast rejections to minute-long streams; overhead is what the
# gateway adds and should stay in the low milliseconds.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 600)
OVERHEAD_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
COMMIT_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
PII_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def bounded(value: str | None, allowed: Iterable[str] | frozenset[str], empty: str = NONE) -> str:
    if not value:
        return empty
    return value if value in allowed else OTHER


class GatewayMetrics:
    def __init__(self, *, model_names: Iterable[str] = (), multiprocess_dir: str | None = None):
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess_dir = multiprocess_dir or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self.model_names = frozenset(model_names)
        self._scrape_time_collectors: list[Collector] = []
        r = self.registry
        self.requests = Counter(
            "ledgergate_requests",
            "HTTP requests answered, by route template, status, model, provider and key source",
            ["route", "status", "model", "provider", "key_source"],
            registry=r,
        )
        self.latency = Histogram(
            "ledgergate_request_duration_seconds",
            "Time from request start to the last byte of the answer (streams included)",
            ["route", "provider"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.overhead = Histogram(
            "ledgergate_overhead_seconds",
            "What the gateway added beyond the upstream call (X-LG-Overhead-Ms)",
            ["route", "provider"],
            buckets=OVERHEAD_BUCKETS_S,
            registry=r,
        )
        self.upstream = Histogram(
            "ledgergate_upstream_duration_seconds",
            "One upstream attempt, to the answer (to the first chunk for streams)",
            ["provider", "outcome"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.tokens = Counter(
            "ledgergate_tokens",
            "Tokens charged, from the ledger's ChargePosted events",
            ["provider", "model", "kind"],
            registry=r,
        )
        self.provider_cost = Counter(
            "ledgergate_provider_cost",
            "Provider cost charged, in the provider's price currency (float: a signal, not money)",
            ["provider", "currency"],
            registry=r,
        )
        self.writer_batch = Histogram(
            "ledgergate_writer_batch_commands",
            "Commands recorded in one group-commit transaction",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.writer_commit = Histogram(
            "ledgergate_writer_commit_seconds",
            "Time to make one transaction durable",
            buckets=COMMIT_BUCKETS_S,
            registry=r,
        )
        self.breaker_transitions = Counter(
            "ledgergate_breaker_transitions",
            "Circuit breaker state changes",
            ["provider", "to_state"],
            registry=r,
        )
        self.cache = Counter(
            "ledgergate_cache_lookups",
            "Response cache outcomes (the X-LG-Cache header)",
            ["route", "outcome"],
            registry=r,
        )
        self.pii_screening = Histogram(
            "ledgergate_pii_screening_seconds",
            "PII screening of one request before routing",
            ["outcome"],
            buckets=PII_BUCKETS_S,
            registry=r,
        )

    # --- label hygiene ------------------------------------------------------------------

    def model_label(self, model: str | None) -> str:
        return bounded(model, self.model_names)

    @staticmethod
    def provider_label(provider: str | None) -> str:
        return bounded(provider, KNOWN_PROVIDERS)

    # --- observations -------------------------------------------------------------------

    def observe_commit(self, commands: int, seconds: float, events: list[Any]) -> None:
        """The writer's on_committed hook (its saver thread)."""
        self.writer_batch.observe(commands)
        self.writer_commit.observe(seconds)
        for event in events:
            if isinstance(event, Account.ChargePosted):
                provider = self.provider_label(event.provider)
                model = self.model_label(event.model)
                for kind, count in (
                    ("input", event.input_tokens),
                    ("output", event.output_tokens),
                    ("cached", event.cached_tokens),
                ):
                    if count:
                        self.tokens.labels(provider, model, kind).inc(count)
                if event.provider_cost:
                    self.provider_cost.labels(provider, event.provider_currency).inc(
                        float(event.provider_cost)
                    )

    def observe_breaker(self, transition: Any) -> None:
        provider, _, _ = str(transition.endpoint_key).partition(":")
        self.breaker_transitions.labels(
            self.provider_label(provider), bounded(transition.to_state, BREAKER_STATES)
        ).inc()

    def add_collector(self, collector: Collector) -> None:
        self._scrape_time_collectors.append(collector)
        self.registry.register(collector)

    # --- exposition ---------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        if self.multiprocess_dir:
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged, path=self.multiprocess_dir)
            for collector in self._scrape_time_collectors:
                merged.register(collector)
            return generate_latest(merged), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class ScrapeTimeGauges(Collector):
    """Gauges read when scraped: projection lag in positions and breaker states. Each reader
    is bounded (one indexed query, one dict walk) and a failing one is left out of the scrape
    rather than failing it."""

    def __init__(
        self,
        *,
        head_position: Callable[[], int],
        views_position: Callable[[], int],
        breakers: Callable[[], list[dict[str, Any]]],
    ) -> None:
        self._head = head_position
        self._views = views_position
        self._breakers = breakers

    def describe(self) -> list[Any]:
        return []  # collected lazily: no store query at registration

    def collect(self) -> Iterable[Any]:
        positions: tuple[int, int] | None
        try:
            positions = (self._head(), self._views())
        except Exception:  # the store is down: /ready says so; the scrape still answers
            positions = None
        if positions is not None:
            head, views = positions
            yield GaugeMetricFamily(
                "ledgergate_event_log_head_position", "Highest position in the event log", head
            )
            yield GaugeMetricFamily(
                "ledgergate_projection_position",
                "Position every read model has applied",
                views,
            )
            yield GaugeMetricFamily(
                "ledgergate_projection_lag_positions",
                "Event-log positions the read models are behind the head",
                max(head - views, 0),
            )
        states = GaugeMetricFamily(
            "ledgergate_breaker_state",
            "1 for the state each provider endpoint's circuit breaker is in",
            labels=["provider", "endpoint", "state"],
        )
        for snapshot in self._breakers():
            endpoint = str(snapshot.get("endpoint") or "")
            provider, _, name = endpoint.partition(":")
            provider = GatewayMetrics.provider_label(provider)
            # Endpoint names come from the operator's configuration (a bounded set), never
            # from a client.
            for state in BREAKER_STATES:
                states.add_metric(
                    [provider, name[:64] or NONE, state], 1.0 if snapshot["state"] == state else 0.0
                )
        yield states
