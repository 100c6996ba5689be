"""A real ledger for finance tests: the core's event store, commands, writer and projection
runner on each backend (SQLite file, real PostgreSQL), with a movable clock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from domain import commands as c
from domain.application import LedgerApplication, open_application
from domain.clock import FixedClock
from domain.writer import run_now
from projections.db import ReadStore
from projections.runner import ProjectionRunner, default_views
from tests.support.builders import (
    admit_request,
    complete_request,
    funded_project,
    list_price,
    request_facts,
    upstream_failure,
)

START = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)


@dataclass
class Ledger:
    app: LedgerApplication
    store: ReadStore
    runner: ProjectionRunner
    clock: FixedClock

    def run(self, command: c.Command) -> object:
        return run_now(self.app, command, clock=self.clock).value

    def project(self, currency: str = "USD", topup: str = "50") -> UUID:
        return funded_project(
            self.run, topup, name=f"p-{currency}", currency=currency, reference="t1"
        )

    def request(
        self, project_id: UUID, request_id: str, *, tokens: tuple[int, int] | None, model: str
    ) -> None:
        facts = request_facts(
            project_id,
            request_id=request_id,
            endpoint="/v1/chat/completions",
            actor_id="alice",
            model=model,
            at=self.clock.now(),
        )
        self.run(
            admit_request(
                facts, upstream_model=f"{model}-2024", input_tokens=1000, output_tokens=1000
            )
        )
        self.clock.advance(seconds=2)
        if tokens is None:
            self.run(upstream_failure(request_id, message="upstream failed", latency_ms=5))
        else:
            self.run(
                complete_request(
                    request_id, tokens, completion_chars=20, latency_ms=5, upstream_ms=4
                )
            )
        self.clock.advance(minutes=1)


@pytest.fixture(name="ledger")
def ledger_fixture(backend: dict[str, str]) -> Iterator[Ledger]:
    database_url = backend.get("LEDGERGATE_DATABASE_URL")
    data_dir = backend["LEDGERGATE_DATA_DIR"]
    app = open_application(database_url, data_dir)
    store = ReadStore(database_url, data_dir)
    store.migrate()
    clock = FixedClock(START)
    runner = ProjectionRunner(app, store, default_views())
    setup = Ledger(app, store, runner, clock)
    setup.run(list_price(START - timedelta(days=1)))
    yield setup
    store.close()
    app.close()
