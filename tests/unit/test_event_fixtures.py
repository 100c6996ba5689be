"""Released event shapes keep decoding: one stored-JSON fixture per event class and version.
A renamed or removed field breaks this test instead of silently breaking stored history."""

from __future__ import annotations

from pathlib import Path

import pytest
from eventsourcing.domain import CanMutateAggregate

import domain.account
import domain.credentials
import domain.pricing
import domain.project
import domain.reconciliation
import domain.request
import domain.trace
from tests.support.ledger import (
    EVENT_FIXTURES,
    decode_event_fixture,
    event_fields,
    event_fixture_name,
)

FIXTURES = EVENT_FIXTURES
CORE_MODULES = (
    domain.account,
    domain.credentials,
    domain.pricing,
    domain.project,
    domain.reconciliation,
    domain.request,
    domain.trace,
)


def core_event_classes() -> list[type]:
    found = []
    for module in CORE_MODULES:
        for aggregate in vars(module).values():
            if isinstance(aggregate, type) and aggregate.__module__ == module.__name__:
                for value in vars(aggregate).values():
                    # Classes declared in our source have their own annotated fields; the
                    # library also generates bare Event/Created subclasses per aggregate.
                    declared = (
                        bool(value.__dict__.get("__annotations__"))
                        if isinstance(value, type)
                        else False
                    )
                    if declared and issubclass(value, CanMutateAggregate):
                        found.append(value)
    return found


def fixture_version(path: Path) -> int:
    return int(path.stem.rsplit("_v", 1)[1])


def upcast_fields(event_class: type, state: dict, version: int) -> set[str]:
    """The fields a stored state of `version` has once its upcasters ran (what the decoded
    event of the current class version must carry)."""
    upcast = {key: value for key, value in state.items() if key != "class_version"}
    for step in range(version, getattr(event_class, "class_version", 1)):
        getattr(event_class, f"upcast_v{step}_v{step + 1}")(upcast)
    return set(upcast)


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*_v*.json")), ids=lambda p: p.stem)
def test_each_stored_fixture_decodes_into_its_event_class_with_every_field(
    path: Path, event_mapper
) -> None:
    event, fixture = decode_event_fixture(event_mapper, path)
    fields = event_fields(event)
    expected = upcast_fields(type(event), fixture["state"], fixture_version(path))
    assert fields == expected | {"timestamp"} or fields == expected


def test_every_core_event_class_has_a_fixture_for_every_version() -> None:
    names = {path.name for path in FIXTURES.glob("*_v*.json")}
    missing = [
        f"{cls.__qualname__} v{version}"
        for cls in core_event_classes()
        for version in range(1, getattr(cls, "class_version", 1) + 1)
        if event_fixture_name(cls.__qualname__, version) not in names
    ]
    assert missing == []
