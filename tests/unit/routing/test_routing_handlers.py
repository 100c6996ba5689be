from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest

from domain.errors import InvalidCommand
from domain.pricing import PriceBook
from domain.routing import EndpointBreaker, ProjectRouting
from domain.routing_handlers import (
    ROUTING_HANDLERS,
    AddCustomEndpoint,
    AddCustomModel,
    RecordBreakerTransition,
    RemoveCustomModel,
)
from tests.unit.routing.test_routing_aggregates import custom_model

MOMENT = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


class FakeUnitOfWork:
    """The writer's unit of work, reduced to what handlers use."""

    def __init__(self, stored: dict[UUID, Any] | None = None) -> None:
        self.stored = stored if stored is not None else {}
        self.added: list[Any] = []

    def find(self, aggregate_id: UUID) -> Any | None:
        return self.stored.get(aggregate_id)

    def add(self, aggregate: Any) -> None:
        self.stored[aggregate.id] = aggregate
        self.added.append(aggregate)


def run(command: Any, uow: FakeUnitOfWork) -> Any:
    return ROUTING_HANDLERS[type(command)](command, uow)


def transition(to_state: str) -> RecordBreakerTransition:
    return RecordBreakerTransition(
        endpoint_key="mistral:default", to_state=to_state, reason="test", observed_at=MOMENT,
        failures_in_window=5, requests_in_window=8, consecutive_failures=5, cooldown_s=Decimal(30),
    )  # fmt: skip


def test_the_first_custom_model_opens_the_projects_routing_aggregate() -> None:
    uow = FakeUnitOfWork()
    project_id = uuid4()
    result = run(AddCustomModel(project_id, custom_model()), uow)
    assert result["model"] == "acme-mistral-ft"
    routing, book = uow.added
    assert isinstance(routing, ProjectRouting)
    assert routing.id == ProjectRouting.create_id(str(project_id))
    # Its price becomes a price event, so admission can price requests for it.
    assert isinstance(book, PriceBook)
    assert [price.input_per_mtok for price in book.prices] == [Decimal("0.20")]
    run(AddCustomEndpoint(project_id, "mistral", "acme", "https://mistral.acme.test"), uow)
    assert len(uow.added) == 2  # the second command reuses the routing aggregate


def test_a_refused_custom_model_adds_no_aggregate() -> None:
    uow = FakeUnitOfWork()
    with pytest.raises(InvalidCommand):
        run(AddCustomModel(uuid4(), custom_model(provider="openai")), uow)
    assert uow.added == []


def test_removing_a_custom_model_from_a_project_without_any_is_refused() -> None:
    with pytest.raises(InvalidCommand):
        run(RemoveCustomModel(uuid4(), "acme-mistral-ft"), FakeUnitOfWork())


def test_breaker_reports_become_a_coherent_history() -> None:
    uow = FakeUnitOfWork()
    assert run(transition("open"), uow)["changed"]
    assert not run(transition("open"), uow)["changed"]  # a second process reporting the same
    assert run(transition("closed"), uow)["changed"]  # open → closed implies half-open
    (breaker,) = uow.added
    events = breaker.collect_events()
    assert [type(e).__name__ for e in events] == ["Registered", "Opened", "HalfOpened", "Closed"]
    assert isinstance(breaker, EndpointBreaker) and breaker.state == "closed"


def test_a_close_for_an_endpoint_never_recorded_as_open_records_nothing() -> None:
    uow = FakeUnitOfWork()
    assert not run(transition("closed"), uow)["changed"]
    assert uow.added == []
