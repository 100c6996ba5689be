"""Each process follows the log for its caches on its own position, independent of the
shared view tracking: an event another process has already projected still reaches this
process's cache eviction (once), on both backends."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from domain import commands as c
from domain.application import open_application
from domain.writer import GroupCommitWriter
from gateway.bootstrap import build_services
from gateway.config import Settings
from gateway.event_store import RECORDER_TOPIC
from projections.db import ReadStore
from projections.runner import ProjectionRunner, default_views


def _runner(env: dict[str, str], seen: list[Any]) -> tuple[ProjectionRunner, Any, ReadStore]:
    url = env.get("LEDGERGATE_DATABASE_URL")
    # On PostgreSQL, the serving processes' recorder: its follower reads three columns only.
    recorder = {"APPLICATION_RECORDER_TOPIC": RECORDER_TOPIC} if url else {}
    app = open_application(url, env["LEDGERGATE_DATA_DIR"], **recorder)
    store = ReadStore(url, env["LEDGERGATE_DATA_DIR"])
    store.migrate()

    def on_notification(aggregate_id: Any, version: int) -> None:
        seen.append((aggregate_id, version))

    return (
        ProjectionRunner(app, store, default_views(), on_notification=on_notification),
        app,
        store,
    )


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
        project_ids = {str(aggregate_id) for aggregate_id, _ in seen_b}
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
        assert seen and all(version >= 1 for _, version in seen)
        later_store.close()
        later.app.close()
    finally:
        writer.stop()
        store.close()
        app.close()


def test_with_the_views_elsewhere_a_process_sees_its_own_write_at_once_without_reading_it_back(
    backend,
) -> None:
    """The projection worker writes the views (LEDGERGATE_RUN_PROJECTIONS=0 here): this
    process's writer drops from its caches what it has just recorded, before the caller is
    answered; its follower is not poked to read its own commit back from the log."""
    settings = Settings.from_env(
        {"LEDGERGATE_SEED_CATALOG_PRICES": "0", "LEDGERGATE_RUN_PROJECTIONS": "0", **backend}
    )
    services = build_services(settings)
    services.start()
    try:
        services.runner.stop()  # nobody follows the log: only the writer's own report acts
        created = services.writer.execute(c.CreateProject(name="own", currency="USD")).value
        project_id = created["project_id"]
        cached = services.cache.get_sync(UUID(project_id))
        assert cached is not None and cached.plan != "enterprise"
        followed_at = services.runner.follow_position
        services.writer.execute(c.SetPlan(project_id=UUID(project_id), plan="enterprise"))
        fresh = services.cache.get_sync(UUID(project_id))
        assert fresh is not None and fresh.plan == "enterprise" and fresh.version > cached.version
        assert services.runner.follow_position == followed_at  # the log was not read back
    finally:
        services.close()


def test_an_observer_of_saves_that_fails_never_fails_or_redoes_a_durable_write(backend) -> None:
    """`on_saved` runs after the transaction committed: its failure is logged, the caller
    gets its outcome, and the command is not decided and recorded a second time."""
    app = open_application(backend.get("LEDGERGATE_DATABASE_URL"), backend["LEDGERGATE_DATA_DIR"])

    def broken(position: int, events: list[Any]) -> None:
        raise RuntimeError("observer bug")

    writer = GroupCommitWriter(app, on_saved=broken).start()
    try:
        before = app.recorder.max_notification_id() or 0
        outcome = writer.execute(c.CreateProject(name="observed", currency="USD"))
        after = app.recorder.max_notification_id() or 0
        assert outcome.position == after
        created = [
            n
            for n in app.recorder.select_notifications(start=before + 1, limit=100)
            if n.topic.endswith("Project.Created")
        ]
        assert len(created) == 1
        assert writer.stats["batch_failures"] == 0 and writer.stats["retries"] == 0
    finally:
        writer.stop()
        app.close()


def test_every_view_applies_a_batch_in_one_transaction_with_its_position(backend) -> None:
    """One commit per batch for all ten views, not one per view; each view's position moves
    to the batch's last event in it."""
    runner, app, store = _runner(backend, [])
    writer = GroupCommitWriter(app).start()
    try:
        runner.catch_up()
        for number in range(5):
            writer.execute(c.CreateProject(name=f"batched-{number}", currency="USD"))
        head = app.recorder.max_notification_id()
        writes: list[bool] = []
        opened = store.transaction

        def counted(*, write: bool = True) -> Any:
            writes.append(write)
            return opened(write=write)

        store.transaction = counted  # type: ignore[method-assign]
        runner.catch_up()
        assert writes.count(True) == 1, writes
        store.transaction = opened  # type: ignore[method-assign]
        assert set(runner.positions().values()) == {head}
        assert len(runner.views) == 10
    finally:
        writer.stop()
        store.close()
        app.close()


def test_a_batch_of_project_events_is_written_at_once_with_every_event_once(backend) -> None:
    """The project-events index buffers a batch's rows and writes them in one go: 7
    projects' events all land once, in log order, and a rebuild writes the same rows."""
    runner, app, store = _runner(backend, [])
    writer = GroupCommitWriter(app).start()
    try:
        runner.catch_up()
        created = [
            writer.execute(c.CreateProject(name=f"chunked-{n}", currency="USD")).value
            for n in range(7)
        ]
        runner.catch_up()
        with store.transaction(write=False) as tx:
            rows = tx.execute(
                "SELECT position, project_id FROM lg_project_events ORDER BY position"
            ).fetchall()
        owned = [n for n in app.recorder.select_notifications(start=1, limit=1000)]
        assert {r["project_id"] for r in rows} == {p["project_id"] for p in created}
        assert [r["position"] for r in rows] == sorted({r["position"] for r in rows})
        assert len(rows) >= 7 and len(rows) <= len(owned)
        runner.rebuild(["project_events"])
        with store.transaction(write=False) as tx:
            again = tx.execute(
                "SELECT position, project_id FROM lg_project_events ORDER BY position"
            ).fetchall()
        assert [dict(r) for r in again] == [dict(r) for r in rows]
    finally:
        writer.stop()
        store.close()
        app.close()


def test_a_batch_moving_one_account_ten_times_reads_and_writes_its_balance_row_once(
    backend, monkeypatch
) -> None:
    """The balances view sums a batch's moves per Account (exact Decimals) and writes the
    row once; the row is what ten one-by-one moves would leave."""
    from decimal import Decimal

    from projections.db import Tx
    from projections.queries import all_balances

    runner, app, store = _runner(backend, [])
    writer = GroupCommitWriter(app).start()
    try:
        project = writer.execute(c.CreateProject(name="topped", currency="USD")).value
        runner.catch_up()
        for n in range(10):
            writer.execute(
                c.TopUp(
                    project_id=UUID(project["project_id"]),
                    amount=Decimal("0.10"),
                    currency="USD",
                    reference=f"t{n}",
                )
            )
        statements: list[str] = []
        execute = Tx.execute

        def counted(self: Tx, sql: str, params: Any = ()) -> Tx:
            statements.append(sql)
            return execute(self, sql, params)

        monkeypatch.setattr(Tx, "execute", counted)
        runner.catch_up()
        monkeypatch.setattr(Tx, "execute", execute)
        touching = [s for s in statements if "lg_balances" in s]
        assert len(touching) == 2, touching  # one SELECT, one UPDATE
        row = all_balances(store)[project["project_id"]]
        assert row["credits"] == row["available"] == Decimal("1.00")
        with store.transaction(write=False) as tx:
            (position,) = (
                tx.execute(
                    "SELECT position FROM lg_balances WHERE project_id = %s",
                    (project["project_id"],),
                )
                .fetchone()
                .values()
            )
        assert int(position) == app.recorder.max_notification_id()
    finally:
        writer.stop()
        store.close()
        app.close()
