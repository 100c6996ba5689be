"""The scale-out rules without IO: which Accounts a command contends for across processes
(domain/contention.py), and what `serve --workers` accepts (gateway/workers.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from uuid import UUID, uuid4

import pytest

from domain import commands as c
from domain.contention import contended_aggregates
from domain.ids import MODE_TEST, account_id, request_aggregate_id
from gateway.config import Settings
from gateway.workers import WorkersRefused, check_workers, server_options
from gateway.write_locks import lock_key
from tests.support.ledger import admit_command

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _nothing(_: UUID) -> None:
    return None


def test_an_admission_contends_for_its_projects_account() -> None:
    project = uuid4()
    assert contended_aggregates(admit_command(project, NOW), _nothing) == {account_id(project)}


def test_a_test_mode_top_up_contends_for_the_test_account_only() -> None:
    project = uuid4()
    command = c.TopUp(
        project_id=project, amount=Decimal(1), currency="USD", reference="r", test=True
    )
    assert contended_aggregates(command, _nothing) == {account_id(project, MODE_TEST)}


def test_a_settlement_contends_for_the_account_its_request_reserved_on() -> None:
    project = uuid4()
    request = SimpleNamespace(project_id=project, mode=MODE_TEST)
    loads: list[UUID] = []

    def load(aggregate_id: UUID) -> object:
        loads.append(aggregate_id)
        return request

    command = c.FailRequest(
        request_id="lg_req_1",
        http_status=502,
        error_code="upstream_error",
        error_type="api_error",
        message="m",
        latency_ms=1,
    )
    assert contended_aggregates(command, load) == {account_id(project, MODE_TEST)}
    assert loads == [request_aggregate_id("lg_req_1")]


def test_lease_renewals_and_journals_take_no_account_lock() -> None:
    renew = c.ExtendDeadline(request_id="lg_req_1", deadline_at=NOW)
    assert contended_aggregates(renew, lambda _: pytest.fail("no load needed")) == frozenset()


def test_an_unknown_request_or_a_command_without_a_project_contends_for_nothing() -> None:
    abandon = c.AbandonRequest(request_id="lg_req_missing")
    assert contended_aggregates(abandon, _nothing) == frozenset()
    assert contended_aggregates(c.CreateProject(name="p"), _nothing) == frozenset()


def test_lock_keys_are_stable_per_schema_and_differ_between_schemas() -> None:
    aggregate = uuid4()
    assert lock_key("a", aggregate) == lock_key("a", aggregate)
    assert lock_key("a", aggregate) != lock_key("b", aggregate)
    assert -(2**63) <= lock_key("a", aggregate) < 2**63


def test_more_than_one_worker_on_sqlite_is_refused_with_a_reason() -> None:
    with pytest.raises(WorkersRefused, match="PostgreSQL"):
        check_workers(Settings.from_env({"LEDGERGATE_DATA_DIR": "/tmp/x"}), 2)
    check_workers(Settings.from_env({"LEDGERGATE_DATA_DIR": "/tmp/x"}), 1)
    postgres = Settings.from_env({"LEDGERGATE_DATABASE_URL": "postgresql://u@h/db"})
    check_workers(postgres, 4)
    with pytest.raises(WorkersRefused):
        check_workers(postgres, 0)


def test_the_server_is_asked_for_uvloop_and_httptools_by_name() -> None:
    options = server_options(Settings.from_env({}))
    assert (options["loop"], options["http"]) == ("uvloop", "httptools")
    assert options["access_log"] is False
