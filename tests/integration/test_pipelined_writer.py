"""The pipelined group commit: when a batch's save fails (here: another process wrote to
the same Account, so the writer's cached copy is stale), that batch and the one decided on
top of it are redone against fresh state; every caller gets one answer, nothing is lost or
recorded twice, and the stored Account equals what the callers were told."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from domain import commands as c
from domain.account import Account
from domain.application import open_application
from domain.clock import FixedClock
from domain.ids import account_id
from domain.writer import GroupCommitWriter, run_now
from tests.support.builders import list_price
from tests.support.ledger import admit_command

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def test_a_conflicting_write_from_another_process_is_absorbed_without_loss_or_double(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    app = open_application(url)
    other = open_application(url)  # a second process on the same store
    clock = FixedClock(NOW)
    try:
        run_now(
            app,
            list_price(NOW.replace(year=2025)),
            clock,
        )
        project = UUID(run_now(app, c.CreateProject(name="p"), clock).value["project_id"])  # type: ignore[index]
        run_now(
            app,
            c.TopUp(project_id=project, amount=Decimal(100), currency="USD", reference="a"),
            clock,
        )
        writer = GroupCommitWriter(app, clock=clock).start()
        try:
            first = [writer.submit(admit_command(project, NOW)) for _ in range(200)]
            for future in first[:50]:
                future.result(30)
            # Another process tops up the same Account: the writer's cached copy is now
            # stale, and its next save of that Account conflicts. That process may itself
            # lose the race to the writer's saves; like a real replica it retries on fresh
            # state (run_now loads the Account anew each time).
            for _attempt in range(20):
                try:
                    run_now(
                        other,
                        c.TopUp(
                            project_id=project, amount=Decimal(5), currency="USD", reference="b"
                        ),
                        clock,
                    )
                    break
                except IntegrityError:
                    continue
            else:
                raise AssertionError("the other process never got its top-up in")
            second = [writer.submit(admit_command(project, NOW)) for _ in range(200)]
            outcomes = [future.result(60) for future in first + second]
            stats = dict(writer.stats)
        finally:
            writer.stop()
        admitted = {outcome.value["request_id"] for outcome in outcomes}  # type: ignore[index]
        assert len(admitted) == 400
        reader = open_application(url)  # a fresh process: state from the store only
        stored: Account = reader.repository.get(account_id(project))
        reader.close()
        assert set(stored.pending) == admitted  # every acknowledged reservation, once
        assert stored.credits == Decimal(105)
        assert stored.requests_in_month(NOW) == 400
        assert stats["batch_failures"] >= 1  # the conflict really happened
    finally:
        app.close()
        other.close()
