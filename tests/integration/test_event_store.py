"""The serving writer's one-round-trip recorder (gateway/event_store.py) on a real
PostgreSQL: it records exactly what the library's recorder records, refuses a conflicting
version the same way, keeps insert order equal to commit order beside the library's
recorder in other processes, and is what a serving process's writer uses."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from eventsourcing.persistence import IntegrityError
from eventsourcing.postgres import PostgresApplicationRecorder

from domain import commands as c
from domain.application import open_application
from domain.clock import FixedClock
from domain.project import Project
from domain.settlement import DEFAULT_FEE_RATE
from domain.writer import GroupCommitWriter
from gateway.bootstrap import build_services
from gateway.config import Settings
from gateway.event_store import RECORDER_TOPIC, OneTripRecorder
from gateway.write_locks import AdvisoryLocks
from tests.integration.test_cross_process_writer import _burst, _project
from tests.support.ledger import admit_command, replay_account

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
COST_EACH = Decimal("0.0007875")  # as in test_cross_process_writer


def _new_project(name: str) -> Project:
    return Project.create(
        name=name,
        tier="unrestricted",
        plan="pro",
        currency="USD",
        fee_rate=DEFAULT_FEE_RATE,
        strict=False,
        now=NOW,
    )


@pytest.fixture
def store_url(postgres_env: dict[str, str]) -> str:
    return postgres_env["LEDGERGATE_DATABASE_URL"]


def test_a_group_commit_is_recorded_in_order_with_the_ids_the_log_gives_it(store_url: str) -> None:
    app = open_application(store_url, APPLICATION_RECORDER_TOPIC=RECORDER_TOPIC)
    try:
        assert isinstance(app.recorder, OneTripRecorder)
        projects = [_new_project(f"p{i}") for i in range(5)]
        before = app.recorder.max_notification_id() or 0
        recordings = app.save(*projects)
        ids = [r.notification.id for r in recordings]
        assert ids == sorted(ids) and len(set(ids)) == 5 and ids[0] > before
        stored = app.recorder.select_notifications(start=before + 1, limit=10)
        assert [n.id for n in stored] == ids
        assert [n.originator_id for n in stored] == [p.id for p in projects]
        # What a serving process's follower reads: the same rows, three columns of them.
        assert app.recorder.select_originators(before, 10) == [
            (n.id, n.originator_id, n.originator_version) for n in stored
        ]
        assert [row[0] for row in app.recorder.select_originators(ids[1], 2)] == ids[2:4]
        assert app.repository.get(projects[3].id).name == "p3"
        assert app.recorder.insert_events([]) == []
    finally:
        app.close()


def test_a_conflicting_version_is_refused_as_the_library_refuses_it(store_url: str) -> None:
    first = open_application(store_url, APPLICATION_RECORDER_TOPIC=RECORDER_TOPIC)
    second = open_application(store_url, APPLICATION_RECORDER_TOPIC=RECORDER_TOPIC)
    try:
        project = _new_project("contended")
        first.save(project)
        mine, theirs = first.repository.get(project.id), second.repository.get(project.id)
        mine.change_plan("enterprise", NOW)
        theirs.change_plan("free", NOW)
        first.save(mine)
        head = first.recorder.max_notification_id()
        with pytest.raises(IntegrityError):
            second.save(theirs)
        assert second.recorder.max_notification_id() == head  # nothing of it was kept
        assert second.repository.get(project.id).plan == "enterprise"
    finally:
        first.close()
        second.close()


def test_beside_the_library_recorder_a_hot_account_stays_exact_and_the_log_has_no_gap(
    store_url: str,
) -> None:
    """Two writers on one Account, one on each recorder (a serving process beside an admin
    CLI or an older replica): the balance admits exactly what it covers, no save conflicts,
    and the notification ids are one gapless sequence in commit order."""
    clock = FixedClock(NOW)
    apps = [
        open_application(store_url),
        open_application(store_url, APPLICATION_RECORDER_TOPIC=RECORDER_TOPIC),
    ]
    assert type(apps[0].recorder) is PostgresApplicationRecorder
    writers = [
        GroupCommitWriter(app, clock=clock, locks=AdvisoryLocks(store_url)).start() for app in apps
    ]
    try:
        per_writer = 150
        covered = 2 * per_writer // 10
        project = _project(store_url, COST_EACH * covered)
        results = _burst(
            writers, [[admit_command(project, NOW) for _ in range(per_writer)] for _ in writers]
        )
        errors = Counter(type(error).__name__ for per in results for _, error in per if error)
        admitted = [value for per in results for value, error in per if not error]
        assert len(admitted) == covered
        assert errors == {"InsufficientFunds": 2 * per_writer - covered}
        for writer in writers:
            assert writer.stats["retries"] == 0 and writer.stats["batch_failures"] == 0
        assert replay_account(apps[0], project).lowest_available >= 0
        ids = [n.id for n in apps[0].recorder.select_notifications(start=1, limit=100_000)]
        assert ids == list(range(ids[0], ids[0] + len(ids)))
    finally:
        for writer in writers:
            writer.stop()
        for app in apps:
            app.close()


def test_a_serving_process_writes_through_the_one_trip_recorder_on_postgresql(
    postgres_env: dict[str, str], tmp_path
) -> None:
    settings = Settings.from_env(
        {
            **postgres_env,
            "LEDGERGATE_DATA_DIR": str(tmp_path),
            "LEDGERGATE_SEED_CATALOG_PRICES": "0",
        }
    )
    services = build_services(settings)
    services.start()
    try:
        assert isinstance(services.app.recorder, OneTripRecorder)
        created = services.writer.execute(c.CreateProject(name="served", currency="USD"))
        assert created.position == services.app.recorder.max_notification_id()
    finally:
        services.close()


def test_warming_the_recorder_prepares_every_pooled_connection_and_records_nothing(
    store_url: str,
) -> None:
    app = open_application(store_url, APPLICATION_RECORDER_TOPIC=RECORDER_TOPIC)
    try:
        before = app.recorder.max_notification_id()
        warmed = app.recorder.warm()
        assert warmed == app.recorder.datastore.pool.min_size >= 1
        assert app.recorder.max_notification_id() == before
        with app.recorder.datastore.get_connection() as connection:
            assert any(
                "lg_insert_" in row["statement"]
                for row in connection.execute("SELECT statement FROM pg_prepared_statements")
            )
        app.save(_new_project("after the warm-up"))  # and the recorder records as before
        assert (app.recorder.max_notification_id() or 0) > (before or 0)
    finally:
        app.close()
