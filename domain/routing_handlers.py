"""Routing commands and their handlers: custom models and endpoints per project (admin), and
breaker state changes reported by the live breakers.

Registered into the writer's handler table with `HANDLERS.update(ROUTING_HANDLERS)`, so the
group-commit writer runs them like every other command. Handlers take the writer's unit of
work (anything with `find(id)` and `add(aggregate)`) and decide before any event is raised.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from domain.commands import Command, UnitOfWorkLike
from domain.errors import InvalidCommand, UnknownProject
from domain.pricing import PRICE_SOURCE_OPERATOR, price_book_for
from domain.project import Project
from domain.routing import (
    BREAKER_CLOSED,
    BREAKER_OPEN,
    BREAKER_TRANSITIONS,
    EndpointBreaker,
    ProjectRouting,
    endpoint_key_ref_provider,
)


@dataclass(frozen=True)
class AddCustomModel(Command):
    project_id: UUID
    entry: Mapping[str, Any]  # models.toml shape: name, provider, upstream_id, tiers, prices, …
    added_by: str = "admin"


@dataclass(frozen=True)
class RemoveCustomModel(Command):
    project_id: UUID
    name: str
    removed_by: str = "admin"


@dataclass(frozen=True)
class AddCustomEndpoint(Command):
    project_id: UUID
    provider: str
    name: str
    base_url: str
    region: str = ""
    api_key_ref: str = ""  # "byok:<provider>": a key stored for this project, or "" for none
    models: tuple[str, ...] = field(default_factory=tuple)
    added_by: str = "admin"


@dataclass(frozen=True)
class RecordBreakerTransition(Command):
    endpoint_key: str
    to_state: str
    reason: str
    observed_at: datetime
    failures_in_window: int = 0
    requests_in_window: int = 0
    consecutive_failures: int = 0
    cooldown_s: Decimal = Decimal(0)
    probe_successes: int = 0


def _existing_routing(uow: UnitOfWorkLike, project_id: UUID) -> ProjectRouting | None:
    found = uow.find(ProjectRouting.create_id(str(project_id)))
    return found if isinstance(found, ProjectRouting) else None


def _routing_for(uow: UnitOfWorkLike, project_id: UUID) -> tuple[ProjectRouting, bool]:
    """The project's routing, or a new one (True): the caller adds a new one to the unit of
    work only once the command is decided, so a refused one leaves nothing behind."""
    routing = _existing_routing(uow, project_id)
    if routing is None:
        return ProjectRouting(str(project_id)), True
    return routing, False


def add_custom_model(cmd: AddCustomModel, uow: UnitOfWorkLike) -> dict[str, Any]:
    routing, is_new = _routing_for(uow, cmd.project_id)
    spec = routing.add_custom_model(cmd.entry, added_by=cmd.added_by[:100])
    if is_new:
        uow.add(routing)
    # Admission prices a request from price events, so the custom model's prices become
    # price events too, in a book of this project's own: price identity includes the project
    # (another project's model of the same name never shares, sees or charges these).
    book, new_book = price_book_for(uow.find, spec.name, cmd.project_id)
    recorded = {price.effective_from for price in book.prices}
    for price in spec.prices:
        if price.effective_from in recorded:
            continue
        book.set_price(
            input_per_mtok=price.input_per_million,
            output_per_mtok=price.output_per_million,
            cached_input_per_mtok=price.cached_input_per_million,
            currency=price.currency,
            effective_from=price.effective_from,
            source=PRICE_SOURCE_OPERATOR,
        )
    if new_book:
        uow.add(book)
    return {
        "project_id": str(cmd.project_id),
        "model": spec.name,
        "provider": spec.provider,
        "tiers": sorted(tier.value for tier in spec.tiers),
    }


def remove_custom_model(cmd: RemoveCustomModel, uow: UnitOfWorkLike) -> dict[str, Any]:
    routing = _existing_routing(uow, cmd.project_id)
    if routing is None:
        raise InvalidCommand("the project has no custom models", param="name")
    routing.remove_custom_model(cmd.name, removed_by=cmd.removed_by[:100])
    return {"project_id": str(cmd.project_id), "removed": cmd.name.strip().lower()}


def add_custom_endpoint(cmd: AddCustomEndpoint, uow: UnitOfWorkLike) -> dict[str, Any]:
    project = uow.find(cmd.project_id)
    if not isinstance(project, Project):
        raise UnknownProject(f"no project {cmd.project_id}")
    if cmd.api_key_ref:
        named = endpoint_key_ref_provider(cmd.api_key_ref)
        if named is not None and project.provider_key(named) is None:
            raise InvalidCommand(
                f"api_key_ref {cmd.api_key_ref!r} names no key stored for this project; set "
                f"one first with `ledgergate provider-key set --provider {named}`",
                param="api_key_ref",
            )
    routing, is_new = _routing_for(uow, cmd.project_id)
    routing.add_endpoint(
        provider=cmd.provider,
        name=cmd.name,
        base_url=cmd.base_url,
        region=cmd.region,
        api_key_ref=cmd.api_key_ref,
        models=cmd.models,
        added_by=cmd.added_by[:100],
    )
    if is_new:
        uow.add(routing)
    return {"project_id": str(cmd.project_id), "endpoint": f"{cmd.provider}:{cmd.name}"}


def record_breaker_transition(cmd: RecordBreakerTransition, uow: UnitOfWorkLike) -> dict[str, Any]:
    """Record a live breaker's state change.

    Several gateway processes each run their own breakers for the same endpoint, so reports
    arrive that the recorded history cannot take as they are (a second "open", a "closed"
    after another process's failed probe). The log must stay a coherent story — closed → open
    → half_open → closed | open — so a report that repeats the current state or cannot
    follow it is acknowledged without an event, and open → closed records the half-open
    step that must have happened in between.
    """
    found = uow.find(EndpointBreaker.create_id(cmd.endpoint_key))
    is_new = not isinstance(found, EndpointBreaker)
    breaker = found if isinstance(found, EndpointBreaker) else EndpointBreaker(cmd.endpoint_key)
    current = breaker.state
    implied_half_open = current == BREAKER_OPEN and cmd.to_state == BREAKER_CLOSED
    if cmd.to_state not in BREAKER_TRANSITIONS[current] and not implied_half_open:
        return {"endpoint": cmd.endpoint_key, "state": current, "changed": False}
    if implied_half_open:
        breaker.half_open(
            reason="implied: another process closed it after its own probe",
            observed_at=cmd.observed_at,
        )
    breaker.apply_transition(
        to_state=cmd.to_state,
        reason=cmd.reason,
        observed_at=cmd.observed_at,
        counts={
            "failures_in_window": cmd.failures_in_window,
            "requests_in_window": cmd.requests_in_window,
            "consecutive_failures": cmd.consecutive_failures,
            "cooldown_s": cmd.cooldown_s,
            "probe_successes": cmd.probe_successes,
        },
    )
    if is_new:
        uow.add(breaker)
    return {"endpoint": cmd.endpoint_key, "state": breaker.state, "changed": True}


ROUTING_HANDLERS: dict[type, Callable[[Any, Any], Any]] = {
    AddCustomModel: add_custom_model,
    RemoveCustomModel: remove_custom_model,
    AddCustomEndpoint: add_custom_endpoint,
    RecordBreakerTransition: record_breaker_transition,
}
