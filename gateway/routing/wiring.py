"""How the gateway's bootstrap builds and starts the routing service (kept here so the
bootstrap needs three calls, not the details)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from eventsourcing.application import AggregateNotFoundError

from domain import commands as c
from domain.ids import price_book_id
from domain.money import Money
from domain.pricing import PriceBook
from gateway.providers.base import ProviderAdapter, ProviderEndpoint
from gateway.routing.endpoints import expand_endpoints
from gateway.routing.service import RoutingService, catalog_price_commands
from gateway.routing.stats import Outcome

log = logging.getLogger("ledgergate.routing")


def build_routing(
    base_endpoints: list[ProviderEndpoint], raw_env: dict[str, str], clock: Any, submit: Any
) -> RoutingService:
    service = RoutingService(expand_endpoints(base_endpoints, raw_env), clock=clock)
    service.report_breakers_to(submit)
    return service


def seed_catalog_prices(service: RoutingService, app: Any, submit: Callable[[Any], Any]) -> int:
    """Record the shipped catalog's prices as price events, once per (model, effective_from,
    source "catalog"). The rows read here only spare the writer work: the domain decides
    (PriceBook.set_price skips a catalog row already recorded, against fresh state when
    another process seeded first), so two processes starting at once record each row once.
    All rows are submitted at once so the group-commit writer saves them in one transaction.
    Returns how many rows were submitted."""
    existing: dict[str, set[Any]] = {}
    for spec in service.catalog.models:
        try:
            book = app.repository.get(price_book_id(spec.name))
        except AggregateNotFoundError:
            continue
        if isinstance(book, PriceBook):
            existing[spec.name] = {
                price.effective_from for price in book.prices if price.source == "catalog"
            }
    rows = catalog_price_commands(service.catalog, existing)
    futures = [submit(c.SetPrice(**row)) for row in rows]
    for future in futures:
        future.result(timeout=60)
    if rows:
        log.info("seeded %d catalog price rows as price events", len(rows))
    return len(rows)


def warm_statistics(service: RoutingService, store: Any) -> int:
    from projections.router_stats import recent_outcomes

    outcomes = []
    for row in recent_outcomes(store):
        cost = None
        if row["cost"] is not None and row["currency"]:
            cost = Money(Decimal(row["cost"]), row["currency"])
        outcomes.append(
            Outcome(
                model=row["model"],
                provider=row["provider"],
                endpoint=row["endpoint"],
                success=row["success"],
                latency_ms=float(row["latency_ms"] or 0),
                cost=cost,
            )
        )
    return service.load_outcomes(outcomes)


def adapter_factory(
    classes: dict[str, type[ProviderAdapter]], client: Any
) -> Callable[[ProviderEndpoint], ProviderAdapter | None]:
    def build(endpoint: ProviderEndpoint) -> ProviderAdapter | None:
        adapter_class = classes.get(endpoint.provider)
        return None if adapter_class is None else adapter_class(endpoint, client)

    return build
