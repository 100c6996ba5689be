"""Snapshots of a hot Account are taken from the aggregate just saved; loading it back
(snapshot + later events) gives exactly the state the single writer holds in memory."""

from __future__ import annotations

from datetime import UTC, datetime

from domain.account import Account
from domain.clock import FixedClock
from domain.ids import account_id
from domain.writer import GroupCommitWriter
from tests.support.ledger import Ledger, admit_command

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def test_a_snapshot_taken_in_the_writers_save_restores_the_same_account_state() -> None:
    ledger = Ledger(FixedClock(NOW))
    ledger.price()
    project = ledger.project(balance="100000")
    writer = GroupCommitWriter(ledger.app, clock=ledger.clock).start()
    try:
        futures = [
            writer.submit(admit_command(project, NOW, input_tokens=10, output_tokens=10))
            for _ in range(1300)
        ]
        for future in futures:
            future.result(60)
        live: Account = writer._load(account_id(project))
    finally:
        writer.stop()
    snapshots = list(ledger.app.snapshots.get(account_id(project)))  # type: ignore[union-attr]
    assert snapshots, "a snapshot was taken past version 1000"
    assert snapshots[-1].originator_version >= 1000
    loaded: Account = ledger.app.repository.get(account_id(project))
    assert loaded.version == live.version == 1302
    assert loaded.__dict__ == live.__dict__
