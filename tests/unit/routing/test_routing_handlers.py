from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest

from domain.errors import InvalidCommand, UnknownProject
from domain.pricing import PriceBook
from domain.project import Project
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


def a_project() -> Project:
    return Project.create(
        name="acme", tier="unrestricted", plan="pro", currency="EUR",
        fee_rate=Decimal("0.05"), strict=False, now=MOMENT,
    )  # fmt: skip


def test_the_first_custom_model_opens_the_projects_routing_aggregate() -> None:
    project = a_project()
    uow = FakeUnitOfWork({project.id: project})
    project_id = project.id
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


def test_an_endpoint_key_reference_must_name_a_key_stored_for_that_project() -> None:
    project = a_project()
    uow = FakeUnitOfWork({project.id: project})
    with pytest.raises(InvalidCommand) as refused:
        run(AddCustomEndpoint(project.id, "openai", "own", "https://llm.acme.test/v1",
                              api_key_ref="byok:openai"), uow)  # fmt: skip
    assert refused.value.details["param"] == "api_key_ref"
    assert "provider-key set" in refused.value.message
    project.set_provider_key(
        provider="openai", ciphertext_b64="Y2lwaGVy", nonce_b64="bm9uY2U=",
        key_fingerprint="f1", secret_fingerprint="s1", now=MOMENT,
    )  # fmt: skip
    run(AddCustomEndpoint(project.id, "openai", "own", "https://llm.acme.test/v1",
                          api_key_ref="byok:openai"), uow)  # fmt: skip
    (routing,) = uow.added
    assert routing.endpoints()[0]["api_key_ref"] == "byok:openai"


def test_an_endpoint_for_an_unknown_project_is_refused() -> None:
    with pytest.raises(UnknownProject):
        run(
            AddCustomEndpoint(uuid4(), "openai", "own", "https://llm.acme.test/v1"),
            FakeUnitOfWork(),
        )


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
