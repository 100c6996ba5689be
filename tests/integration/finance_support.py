"""A real ledger for finance tests: the core's event store, commands, writer and projection
runner on each backend (SQLite file, real PostgreSQL), with a movable clock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import pytest

from domain import commands as c
from domain.application import LedgerApplication, open_application
from domain.clock import FixedClock
from domain.writer import run_now
from projections.db import ReadStore
from projections.runner import ProjectionRunner, default_views

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
        created = self.run(c.CreateProject(name=f"p-{currency}", currency=currency))
        project_id = UUID(created["project_id"])  # type: ignore[index]
        self.run(
            c.TopUp(project_id=project_id, amount=Decimal(topup), currency=currency, reference="t1")
        )
        return project_id

    def request(
        self, project_id: UUID, request_id: str, *, tokens: tuple[int, int] | None, model: str
    ) -> None:
        facts = c.RequestFacts(
            request_id=request_id,
            endpoint="/v1/chat/completions",
            project_id=project_id,
            key_id=None,
            actor_id="alice",
            model_requested=model,
            stream=False,
            message_count=1,
            prompt_chars=10,
            prompt_sha256=None,
            trace_id=None,
            idempotency_key_sha256=None,
            client_ip=None,
            received_at=self.clock.now(),
            deadline_at=self.clock.now() + timedelta(minutes=5),
        )
        self.run(
            c.AdmitRequest(
                facts=facts,
                route=c.Route(model=model, provider="openai", upstream_model=f"{model}-2024"),
                estimated_input_tokens=1000,
                max_output_tokens=1000,
                fee_rate=Decimal("0.05"),
            )
        )
        self.clock.advance(seconds=2)
        if tokens is None:
            self.run(
                c.FailRequest(
                    request_id=request_id,
                    http_status=502,
                    error_code="upstream_error",
                    error_type="api_error",
                    message="upstream failed",
                    latency_ms=5,
                )
            )
        else:
            self.run(
                c.CompleteRequest(
                    request_id=request_id,
                    usage=c.UsageReport(input_tokens=tokens[0], output_tokens=tokens[1]),
                    finish_reason="stop",
                    completion_chars=20,
                    completion_sha256=None,
                    latency_ms=5,
                    upstream_ms=4,
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
    setup.run(
        c.SetPrice(
            model="gpt-4o-mini",
            input_per_mtok=Decimal("0.15"),
            output_per_mtok=Decimal("0.60"),
            currency="USD",
            effective_from=START - timedelta(days=1),
        )
    )
    yield setup
    store.close()
    app.close()
