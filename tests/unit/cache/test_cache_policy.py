"""A project's cache policy as a domain aggregate: the admin command's rules, partial
updates, and the released event shapes (one stored-JSON fixture per class)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from domain import commands as c
from domain.application import open_application
from domain.cache_policy import (
    DEFAULT_POLICY,
    ProjectCachePolicy,
    SetCachePolicy,
    parse_semantic_threshold,
    policy_of,
)
from domain.errors import InvalidCommand, UnknownProject
from domain.writer import run_now
from gateway.admin_commands import set_cache_policy
from gateway.byok import SecretKeyMissing
from tests.support.ledger import (
    EVENT_FIXTURES,
    assert_fixture_decodes_as,
    event_fixture_name,
)

FIXTURES = EVENT_FIXTURES
EVENT_CLASSES = (ProjectCachePolicy.Started, ProjectCachePolicy.PolicySet)


@pytest.fixture
def app(tmp_path: Path):
    application = open_application(None, str(tmp_path))
    yield application
    application.close()


def project(app) -> UUID:
    return UUID(run_now(app, c.CreateProject(name="p", currency="EUR")).value["project_id"])


def test_a_policy_is_set_in_parts_and_the_rest_stays_as_it_was(app) -> None:
    project_id = project(app)
    aggregate_id = ProjectCachePolicy.create_id(str(project_id))
    first = run_now(app, SetCachePolicy(project_id=project_id, default_mode="ALWAYS")).value
    assert first["default_mode"] == "always" and first["semantic_threshold"] is None
    run_now(app, SetCachePolicy(project_id=project_id, semantic_threshold="0.9", set_by="ops"))
    policy = policy_of(app.repository.get(aggregate_id))
    assert policy.default_mode == "always" and policy.semantic_threshold == Decimal("0.9")
    run_now(app, SetCachePolicy(project_id=project_id, share_across_keys=True))
    run_now(app, SetCachePolicy(project_id=project_id, semantic_threshold="off"))
    aggregate = app.repository.get(aggregate_id)
    assert aggregate.policy.semantic_threshold is None
    assert aggregate.policy.share_across_keys is True and aggregate.policy.default_mode == "always"
    assert aggregate.version == 5  # started + four changes, each an event
    assert policy_of(None) == DEFAULT_POLICY


@pytest.mark.parametrize(
    "changes",
    [
        {"default_mode": "sometimes"},
        {"semantic_threshold": "0.3"},
        {"semantic_threshold": "1.5"},
        {"semantic_threshold": "NaN"},
        {"semantic_threshold": "zero"},
        {"semantic_model": "x" * 201},
    ],
)
def test_a_bad_policy_is_refused_and_records_nothing(app, changes: dict) -> None:
    project_id = project(app)
    with pytest.raises(InvalidCommand):
        run_now(app, SetCachePolicy(project_id=project_id, **changes))
    with pytest.raises(Exception):  # noqa: B017 - nothing was saved: no aggregate at all
        app.repository.get(ProjectCachePolicy.create_id(str(project_id)))


def test_an_unknown_project_has_no_policy(app) -> None:
    with pytest.raises(UnknownProject):
        run_now(app, SetCachePolicy(project_id=uuid4(), default_mode="always"))


def test_thresholds_parse_as_decimals_in_range() -> None:
    assert parse_semantic_threshold("0.92") == Decimal("0.92")
    assert parse_semantic_threshold(1) == Decimal(1)
    for bad in ("0.49", "-1", "", "1e400", True, None, "0." + "9" * 20):
        with pytest.raises(InvalidCommand):
            parse_semantic_threshold(bad)


def test_admin_input_is_checked_field_by_field_and_sharing_needs_the_server_secret() -> None:
    project_id = uuid4()
    command = set_cache_policy(
        project_id, {"default_mode": "never", "semantic_threshold": 0.95}, sharing_available=False
    )
    assert command.default_mode == "never" and command.semantic_threshold == "0.95"
    assert command.share_across_keys is None  # unchanged
    with pytest.raises(SecretKeyMissing):
        set_cache_policy(project_id, {"share_across_keys": True}, sharing_available=False)
    assert (
        set_cache_policy(
            project_id, {"share_across_keys": False}, sharing_available=False
        ).share_across_keys
        is False
    )
    for bad in ({"share_across_keys": 1}, {"default_mode": 3}, {"nope": 1}, {"semantic_model": []}):
        with pytest.raises(InvalidCommand) as caught:
            set_cache_policy(project_id, bad, sharing_available=True)
        assert caught.value.details["param"] == next(iter(bad))


@pytest.mark.parametrize("event_class", EVENT_CLASSES, ids=lambda cls: cls.__qualname__)
def test_each_cache_policy_event_class_has_a_fixture_that_decodes_with_every_field(
    event_class: type, event_mapper
) -> None:
    assert_fixture_decodes_as(event_mapper, event_class)


def test_the_policy_event_carries_no_secret() -> None:
    text = (FIXTURES / event_fixture_name("ProjectCachePolicy.PolicySet")).read_text()
    assert 'secret"' not in text and 'key"' not in text
