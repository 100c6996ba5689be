"""Released routing event shapes keep decoding: one stored-JSON fixture per class (written
by tests/unit/routing/make_event_fixtures.py). The class list is explicit, so a new routing
event without a fixture fails here."""

from __future__ import annotations

import pytest

from domain.request import Request
from domain.routing import EndpointBreaker, ProjectRouting
from tests.support.ledger import (
    EVENT_FIXTURES,
    assert_fixture_decodes_as,
    event_fixture_name,
)

FIXTURES = EVENT_FIXTURES
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


@pytest.mark.parametrize("event_class", ROUTING_EVENT_CLASSES, ids=lambda cls: cls.__qualname__)
def test_each_routing_event_class_has_a_fixture_that_decodes_with_every_field(
    event_class: type, event_mapper
) -> None:
    assert_fixture_decodes_as(event_mapper, event_class)


def test_stored_routing_events_carry_no_endpoint_url_secret_or_key() -> None:
    for event_class in ROUTING_EVENT_CLASSES:
        path = FIXTURES / event_fixture_name(event_class.__qualname__)
        text = path.read_text()
        assert 'api_key"' not in text and "sk-" not in text, path.name
