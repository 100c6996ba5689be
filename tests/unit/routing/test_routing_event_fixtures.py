"""Released routing event shapes keep decoding: one stored-JSON fixture per class (written
by tests/unit/routing/make_event_fixtures.py). The class list is explicit, so a new routing
event without a fixture fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.application import LedgerApplication
from domain.request import Request
from domain.routing import EndpointBreaker, ProjectRouting
from tests.support.ledger import decode_event_fixture, event_fields

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "events"
ROUTING_EVENT_CLASSES = (
    ProjectRouting.Started,
    ProjectRouting.CustomModelAdded,
    ProjectRouting.CustomModelRemoved,
    ProjectRouting.EndpointAdded,
    ProjectRouting.EndpointRemoved,
    EndpointBreaker.Registered,
    EndpointBreaker.Opened,
    EndpointBreaker.HalfOpened,
    EndpointBreaker.Closed,
    Request.RouteDecided,
    Request.Repriced,
    Request.DocumentsProcessed,
)


@pytest.fixture(scope="module")
def mapper():
    return LedgerApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper


@pytest.mark.parametrize("event_class", ROUTING_EVENT_CLASSES, ids=lambda cls: cls.__qualname__)
def test_each_routing_event_class_has_a_fixture_that_decodes_with_every_field(
    event_class: type, mapper
) -> None:
    path = FIXTURES / (event_class.__qualname__.replace(".", "_") + "_v1.json")
    event, fixture = decode_event_fixture(mapper, path)
    assert type(event) is event_class
    fields = event_fields(event)
    assert fields == set(fixture["state"])


def test_stored_routing_events_carry_no_endpoint_url_secret_or_key() -> None:
    for event_class in ROUTING_EVENT_CLASSES:
        path = FIXTURES / (event_class.__qualname__.replace(".", "_") + "_v1.json")
        text = path.read_text()
        assert 'api_key"' not in text and "sk-" not in text, path.name
