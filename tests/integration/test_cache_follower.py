"""Each process follows the log for its caches on its own position, independent of the
shared view tracking: an event another process has already projected still reaches this
process's cache eviction (once), on both backends."""

from __future__ import annotations

from typing import Any

from domain import commands as c
from domain.application import open_application
from domain.writer import GroupCommitWriter
from projections.db import ReadStore
from projections.runner import ProjectionRunner, default_views


def _runner(env: dict[str, str], seen: list[Any]) -> tuple[ProjectionRunner, Any, ReadStore]:
    app = open_application(env.get("LEDGERGATE_DATABASE_URL"), env["LEDGERGATE_DATA_DIR"])
    store = ReadStore(env.get("LEDGERGATE_DATABASE_URL"), env["LEDGERGATE_DATA_DIR"])
    store.migrate()
    return ProjectionRunner(app, store, default_views(), on_notification=seen.append), app, store


def test_an_event_projected_by_another_process_still_reaches_this_process_caches(
    backend,
) -> None:
    seen_a: list[Any] = []
    seen_b: list[Any] = []
    runner_a, app_a, store_a = _runner(backend, seen_a)
    runner_b, app_b, store_b = _runner(backend, seen_b)
    writer = GroupCommitWriter(app_a).start()
    try:
        runner_a.catch_up()
        runner_b.catch_up()
        created = writer.execute(c.CreateProject(name="followed", currency="USD")).value
        runner_a.catch_up()  # process A projects the event first: the shared tracking moves
        assert runner_b.views_position() == runner_a.position
        runner_b.catch_up()
        project_ids = {str(event.originator_id) for event in seen_b}
        assert created["project_id"] in project_ids  # B evicts what A projected
        assert len(seen_b) == len(seen_a)  # every event once, no more
        runner_b.catch_up()
        assert len(seen_b) == len(seen_a)
    finally:
        writer.stop()
        for store, app in ((store_a, app_a), (store_b, app_b)):
            store.close()
            app.close()


def test_a_follower_starts_at_the_log_head_and_does_not_replay_history(backend) -> None:
    seen: list[Any] = []
    runner, app, store = _runner(backend, [])
    writer = GroupCommitWriter(app).start()
    try:
        writer.execute(c.CreateProject(name="before", currency="USD"))
        runner.catch_up()
        later, _, later_store = _runner(backend, seen)
        later.catch_up()
        assert seen == []  # nothing was cached before this process started
        writer.execute(c.CreateProject(name="after", currency="USD"))
        later.catch_up()
        assert seen and all(event.originator_version >= 1 for event in seen)
        later_store.close()
        later.app.close()
    finally:
        writer.stop()
        store.close()
        app.close()
