"""Aggregates of the router: per-project custom models/endpoints and per-endpoint breakers.

Event classes are explicit (never `@event("Name")`), so renaming a method cannot change what is
stored; each declares its fields and its effect (`apply`, re-run on replay: no validation, no
clocks, no IO) once. Command methods validate, then `trigger_event(EventClass, **fields)`.
Events carry primitives, tuples, str-Decimals and aware datetimes only, and never a secret:
an endpoint's API key is a REFERENCE to a key stored (encrypted) for the same project,
`byok:<provider>`, never a key and never a name in the server's environment (naming
`LEDGERGATE_SECRET_KEY` there once sent the server's secrets to any URL an admin typed).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.catalog import Catalog, ModelSpec, spec_from_mapping
from domain.clock import require_aware
from domain.errors import IllegalTransition, InvalidCommand
from domain.ids import derived_id
from domain.vocabulary import KNOWN_PROVIDERS

_NAMESPACE = uuid5(NAMESPACE_URL, "https://ledgergate.dev/routing")


def counts_as_endpoint_failure(
    http_status: int, *, retryable: bool = False, local: bool = False
) -> bool:
    """Whether a failed attempt counts against its endpoint (breaker, failover, router
    statistics): a 5xx, a 429 or a retryable error does; a client's 4xx says nothing about
    the endpoint, nor does the gateway's own exhausted pool (`local`)."""
    if local:
        return False
    return retryable or http_status >= 500 or http_status == 429


_ENDPOINT_KEY_REF = re.compile(r"^byok:([a-z]{2,16})$")
BYOK_REF_PREFIX = "byok:"
# The stored fields of CustomModelAdded that make a custom model's entry (models.toml shape;
# `prices` is turned from rows into tables, `added_by` is not part of the model).
_MODEL_ENTRY_FIELDS: tuple[str, ...] = (
    "name",
    "aliases",
    "provider",
    "upstream_id",
    "family",
    "capabilities",
    "size_class",
    "regions",
    "tiers",
    "named_only",
    "pin_region",
    "quality",
    "latency_ms_typical",
    "context_window",
    "max_output_tokens",
    "prices",
)
_MODEL_TUPLE_FIELDS: tuple[str, ...] = ("aliases", "capabilities", "regions", "tiers")
_ENDPOINT_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")

BREAKER_CLOSED = "closed"
BREAKER_OPEN = "open"
BREAKER_HALF_OPEN = "half_open"


# The only legal breaker moves; a replayed log therefore always tells a coherent story.
BREAKER_TRANSITIONS: dict[str, frozenset[str]] = {
    BREAKER_CLOSED: frozenset({BREAKER_OPEN}),
    BREAKER_OPEN: frozenset({BREAKER_HALF_OPEN}),
    BREAKER_HALF_OPEN: frozenset({BREAKER_OPEN, BREAKER_CLOSED}),
}


def endpoint_key_ref_provider(api_key_ref: str) -> str | None:
    """The provider whose project-stored key a reference names, or None when it is not a
    well-formed `byok:<provider>` reference (a legacy environment name, a pasted key, …)."""
    match = _ENDPOINT_KEY_REF.match(api_key_ref)
    return match.group(1) if match else None


def endpoint_key(provider: str, name: str) -> str:
    """The one spelling of an endpoint's identity, used by breakers, stats and headers."""
    return f"{provider}:{name}"


class ProjectRouting(Aggregate):
    """Custom models and endpoints of one project, added by admin command."""

    class Started(Aggregate.Created):
        project_id: str

    class CustomModelAdded(Aggregate.Event):
        name: str
        aliases: tuple[str, ...]
        provider: str
        upstream_id: str
        family: str
        capabilities: tuple[str, ...]
        size_class: str
        regions: tuple[str, ...]
        tiers: tuple[str, ...]
        named_only: bool
        pin_region: bool
        quality: str
        latency_ms_typical: int
        context_window: int
        max_output_tokens: int
        prices: tuple[tuple[str, str, str, str], ...]  # (effective_from iso, currency, in, out)
        added_by: str

        def apply(self, aggregate: ProjectRouting) -> None:
            entry: dict[str, Any] = {name: getattr(self, name) for name in _MODEL_ENTRY_FIELDS}
            for name in _MODEL_TUPLE_FIELDS:  # lists once replayed from JSON
                entry[name] = tuple(entry[name])
            entry["prices"] = [
                {
                    "effective_from": row[0],
                    "currency": row[1],
                    "input_per_million": row[2],
                    "output_per_million": row[3],
                }
                for row in self.prices
            ]
            aggregate._models[self.name] = entry

    class CustomModelRemoved(Aggregate.Event):
        name: str
        removed_by: str

        def apply(self, aggregate: ProjectRouting) -> None:
            aggregate._models.pop(self.name, None)

    class EndpointAdded(Aggregate.Event):
        provider: str
        name: str
        base_url: str
        region: str
        # "byok:<provider>": the project's own stored key; "" none. Never a key, never an
        # environment name (events recorded before this rule may hold one: it is ignored).
        api_key_ref: str
        models: tuple[str, ...]  # model names it may serve; empty = any of that provider
        added_by: str

        def apply(self, aggregate: ProjectRouting) -> None:
            aggregate._endpoints[endpoint_key(self.provider, self.name)] = {
                "provider": self.provider,
                "name": self.name,
                "base_url": self.base_url,
                "region": self.region,
                "api_key_ref": self.api_key_ref,
                "models": tuple(self.models),
            }

    class EndpointRemoved(Aggregate.Event):
        provider: str
        name: str
        removed_by: str

        def apply(self, aggregate: ProjectRouting) -> None:
            aggregate._endpoints.pop(endpoint_key(self.provider, self.name), None)

    @staticmethod
    def create_id(project_id: str) -> UUID:
        return derived_id(_NAMESPACE, f"project-routing:{project_id}")

    @event(Started)
    def __init__(self, project_id: str) -> None:
        self.project_id = project_id
        self._models: dict[str, dict[str, Any]] = {}
        self._endpoints: dict[str, dict[str, Any]] = {}

    # ---- commands (validate here; the event methods below only apply)

    def add_custom_model(
        self,
        entry: Mapping[str, Any],
        *,
        added_by: str,
        shipped: Catalog | None = None,
    ) -> ModelSpec:
        """`entry` has the models.toml shape (prices as a list of tables). Returns the spec."""
        spec = spec_from_mapping(entry, source=f"custom:{self.project_id}")
        catalog = (shipped or Catalog.shipped()).with_models(*self.custom_models())
        # Raises on a name/alias clash with shipped or earlier custom models.
        catalog.with_models(spec)
        self.trigger_event(
            self.CustomModelAdded,
            name=spec.name,
            aliases=spec.aliases,
            provider=spec.provider,
            upstream_id=spec.upstream_id,
            family=spec.family,
            capabilities=tuple(sorted(spec.capabilities)),
            size_class=spec.size_class,
            regions=spec.regions,
            tiers=tuple(sorted(tier.value for tier in spec.tiers)),
            named_only=spec.named_only,
            pin_region=spec.pin_region,
            quality=format(spec.quality, "f"),
            latency_ms_typical=spec.latency_ms_typical,
            context_window=spec.context_window,
            max_output_tokens=spec.max_output_tokens,
            prices=tuple(
                (
                    price.effective_from.isoformat(),
                    price.currency,
                    format(price.input_per_million, "f"),
                    format(price.output_per_million, "f"),
                )
                for price in spec.prices
            ),
            added_by=added_by,
        )
        return spec

    def remove_custom_model(self, name: str, *, removed_by: str) -> None:
        key = name.strip().lower()
        if key not in self._models:
            raise InvalidCommand(f"project has no custom model {key[:80]!r}", param="name")
        self.trigger_event(self.CustomModelRemoved, name=key, removed_by=removed_by)

    def add_endpoint(
        self,
        *,
        provider: str,
        name: str,
        base_url: str,
        region: str = "",
        api_key_ref: str = "",
        models: Iterable[str] = (),
        added_by: str,
    ) -> None:
        if provider not in KNOWN_PROVIDERS:
            raise InvalidCommand(f"unknown provider {provider[:30]!r}", param="provider")
        if not _ENDPOINT_NAME.match(name):
            raise InvalidCommand("endpoint names are short lower-case labels", param="name")
        if not base_url.startswith(("https://", "http://")) or len(base_url) > 500:
            raise InvalidCommand("base_url must be an http(s) URL", param="base_url")
        if "@" in base_url.split("//", 1)[1].split("/", 1)[0]:
            # Credentials in a URL would land in the event log in clear text.
            raise InvalidCommand("base_url must not embed credentials", param="base_url")
        if api_key_ref and endpoint_key_ref_provider(api_key_ref) != provider:
            raise InvalidCommand(
                f"api_key_ref may only name this project's own stored {provider} key, "
                f"'{BYOK_REF_PREFIX}{provider}' (set it with `ledgergate provider-key set`), "
                "or be empty; never a key and never a server environment variable",
                param="api_key_ref",
            )
        key = endpoint_key(provider, name)
        if key in self._endpoints:
            raise InvalidCommand(f"endpoint {key} already exists", param="name")
        self.trigger_event(
            self.EndpointAdded,
            provider=provider,
            name=name,
            base_url=base_url,
            region=region,
            api_key_ref=api_key_ref,
            models=tuple(sorted(model.strip().lower() for model in models)),
            added_by=added_by,
        )

    def remove_endpoint(self, provider: str, name: str, *, removed_by: str) -> None:
        if endpoint_key(provider, name) not in self._endpoints:
            raise InvalidCommand(f"no endpoint {endpoint_key(provider, name)}", param="name")
        self.trigger_event(
            self.EndpointRemoved, provider=provider, name=name, removed_by=removed_by
        )

    # ---- queries

    def custom_models(self) -> tuple[ModelSpec, ...]:
        return tuple(
            spec_from_mapping(entry, source=f"custom:{self.project_id}")
            for entry in self._models.values()
        )

    def endpoints(self) -> tuple[dict[str, Any], ...]:
        return tuple(dict(entry) for entry in self._endpoints.values())


class EndpointBreaker(Aggregate):
    """The circuit-breaker history of one provider endpoint, as events an auditor can read.

    The live breaker (gateway/routing/breaker.py) decides in memory on the hot path and reports
    each state change; the gateway records it here. Transitions are checked so a replayed log
    always tells a coherent story: closed → open → half_open → closed | open.
    """

    class Registered(Aggregate.Created):
        endpoint_key: str

    class Opened(Aggregate.Event):
        reason: str
        failures_in_window: int
        requests_in_window: int
        consecutive_failures: int
        cooldown_s: str  # str-Decimal
        observed_at: datetime

        def apply(self, aggregate: EndpointBreaker) -> None:
            aggregate.state = BREAKER_OPEN
            aggregate.times_opened += 1

    class HalfOpened(Aggregate.Event):
        reason: str
        observed_at: datetime

        def apply(self, aggregate: EndpointBreaker) -> None:
            aggregate.state = BREAKER_HALF_OPEN

    class Closed(Aggregate.Event):
        reason: str
        probe_successes: int
        observed_at: datetime

        def apply(self, aggregate: EndpointBreaker) -> None:
            aggregate.state = BREAKER_CLOSED

    @staticmethod
    def create_id(endpoint_key: str) -> UUID:
        return derived_id(_NAMESPACE, f"endpoint-breaker:{endpoint_key}")

    @event(Registered)
    def __init__(self, endpoint_key: str) -> None:
        self.endpoint_key = endpoint_key
        self.state = BREAKER_CLOSED
        self.times_opened = 0

    def _check(self, target: str) -> None:
        if target not in BREAKER_TRANSITIONS[self.state]:
            raise IllegalTransition(
                f"breaker {self.endpoint_key} cannot go from {self.state} to {target}",
                endpoint=self.endpoint_key,
                state=self.state,
                target=target,
            )

    def open(
        self,
        *,
        reason: str,
        failures_in_window: int,
        requests_in_window: int,
        consecutive_failures: int,
        cooldown_s: Decimal,
        observed_at: datetime,
    ) -> None:
        self._check(BREAKER_OPEN)
        self.trigger_event(
            self.Opened,
            reason=reason[:200],
            failures_in_window=failures_in_window,
            requests_in_window=requests_in_window,
            consecutive_failures=consecutive_failures,
            cooldown_s=format(cooldown_s, "f"),
            observed_at=require_aware(observed_at),
        )

    def half_open(self, *, reason: str, observed_at: datetime) -> None:
        self._check(BREAKER_HALF_OPEN)
        self.trigger_event(
            self.HalfOpened, reason=reason[:200], observed_at=require_aware(observed_at)
        )

    def close(self, *, reason: str, probe_successes: int, observed_at: datetime) -> None:
        self._check(BREAKER_CLOSED)
        self.trigger_event(
            self.Closed,
            reason=reason[:200],
            probe_successes=probe_successes,
            observed_at=require_aware(observed_at),
        )

    def apply_transition(
        self, *, to_state: str, reason: str, observed_at: datetime, counts: Mapping[str, Any]
    ) -> None:
        """Record a live breaker's transition (the shape gateway/routing/breaker.py reports)."""
        if to_state == BREAKER_OPEN:
            self.open(
                reason=reason,
                failures_in_window=int(counts.get("failures_in_window", 0)),
                requests_in_window=int(counts.get("requests_in_window", 0)),
                consecutive_failures=int(counts.get("consecutive_failures", 0)),
                cooldown_s=Decimal(str(counts.get("cooldown_s", "0"))),
                observed_at=observed_at,
            )
        elif to_state == BREAKER_HALF_OPEN:
            self.half_open(reason=reason, observed_at=observed_at)
        elif to_state == BREAKER_CLOSED:
            self.close(
                reason=reason,
                probe_successes=int(counts.get("probe_successes", 0)),
                observed_at=observed_at,
            )
        else:
            raise InvalidCommand(f"unknown breaker state {to_state[:20]!r}")
