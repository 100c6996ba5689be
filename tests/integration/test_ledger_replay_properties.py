"""On both storage backends: for any interleaving of top-ups, admissions (reservations),
completions (posts), failures (releases), retried settlements, sweeps of crashed requests,
writer crashes (all cached state lost) and projection re-runs, the balances projection
equals the Account replayed from the store, available = credits - posted - pending >= 0,
each request is charged at most once, and dropping the views and replaying the whole log
gives the same rows as the live incremental build."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import commands as c
from domain.account import Account
from domain.application import open_application
from domain.clock import FixedClock
from domain.errors import DomainError
from domain.ids import account_id
from domain.writer import GroupCommitWriter
from gateway.config import Settings
from projections.db import ReadStore
from projections.queries import all_balances, dump_table
from projections.runner import ProjectionRunner, default_views
from tests.support.builders import list_price, upstream_failure
from tests.support.ledger import admit_command

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
VIEW_TABLES = {
    "lg_balances": "project_id",
    "lg_usage": "project_id, day, model, provider, key_id, actor_id, key_source",
    "lg_pricing_history": "event_id",
    "lg_audit": "request_id",
}

operation = st.one_of(
    st.tuples(st.just("top_up"), st.integers(1, 3)),
    st.tuples(st.just("admit"), st.integers(10, 400_000), st.integers(1, 400_000)),
    st.tuples(st.just("complete"), st.integers(0, 20), st.integers(0, 500_000)),
    st.tuples(st.just("fail"), st.integers(0, 20)),
    st.tuples(st.just("sweep"), st.integers(0, 20)),
    st.tuples(st.just("crash")),
    st.tuples(st.just("project")),
)


class Harness:
    def __init__(self, env: dict[str, str]) -> None:
        self.settings = Settings.from_env(env)
        self.clock = FixedClock(NOW)
        self.store = ReadStore(self.settings.database_url, self.settings.data_dir)
        self.store.migrate()
        self._open()
        self.writer.execute(list_price(NOW - timedelta(days=1)))
        self.writer.execute(
            c.SetFxRate(
                base="USD",
                quote="EUR",
                rate=Decimal("0.92"),
                effective_from=NOW - timedelta(days=1),
            )
        )

    def _open(self) -> None:
        self.app = open_application(self.settings.database_url, self.settings.data_dir)
        self.writer = GroupCommitWriter(self.app, clock=self.clock).start()
        self.runner = ProjectionRunner(self.app, self.store, default_views())

    def crash(self) -> None:
        """The process dies: the writer's cache and the app are gone; only the store remains."""
        self.writer.stop()
        self.app.close()
        self._open()

    def close(self) -> None:
        self.writer.stop()
        self.app.close()
        self.store.close()

    def run(self, command: c.Command) -> Any:
        try:
            return self.writer.execute(command).value
        except DomainError as error:
            return error


@pytest.fixture
def harness(backend: dict[str, str]) -> Iterator[Harness]:
    ledger = Harness(backend)
    try:
        yield ledger
    finally:
        ledger.close()


def test_balances_stay_consistent_through_crashes_retries_and_projection_replays(
    harness: Harness, backend: dict[str, str]
) -> None:
    examples = 12 if "LEDGERGATE_DATABASE_URL" in backend else 20

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.lists(operation, min_size=1, max_size=25), st.sampled_from(["USD", "EUR"]))
    def scenario(ops: list, currency: str) -> None:
        created = harness.run(c.CreateProject(name="prop", currency=currency))
        project_id = UUID(created["project_id"])
        requests: list[str] = []
        for n, op in enumerate(ops):
            kind = op[0]
            if kind == "top_up":
                harness.run(
                    c.TopUp(
                        project_id=project_id,
                        amount=Decimal(op[1]),
                        currency=currency,
                        reference=f"t{n}",
                    )
                )
            elif kind == "admit":
                outcome = harness.run(
                    admit_command(project_id, NOW, input_tokens=op[1], output_tokens=op[2])
                )
                if isinstance(outcome, dict):
                    requests.append(outcome["request_id"])
            elif kind in ("complete", "fail", "sweep") and requests:
                request_id = requests[op[1] % len(requests)]  # may repeat: a retried settlement
                if kind == "complete":
                    harness.run(
                        c.CompleteRequest(
                            request_id=request_id,
                            usage=c.UsageReport(op[2] // 2, op[2] - op[2] // 2),
                            finish_reason="stop",
                            completion_chars=1,
                            completion_sha256=None,
                            latency_ms=1,
                            upstream_ms=1,
                        )
                    )
                elif kind == "fail":
                    harness.run(upstream_failure(request_id))
                else:
                    harness.run(c.AbandonRequest(request_id=request_id))
            elif kind == "crash":
                harness.crash()
            elif kind == "project":
                # Another runner (a second process) applies the same log concurrently: what
                # either has applied already is a no-op for the other.
                other = ProjectionRunner(harness.app, harness.store, default_views())
                other.catch_up()
                harness.runner.catch_up()
        harness.runner.catch_up()
        fresh = open_application(harness.settings.database_url, harness.settings.data_dir)
        try:
            account: Account = fresh.repository.get(account_id(project_id))
            events = list(fresh.repository.event_store.get(account_id(project_id)))
        finally:
            fresh.close()
        projected = all_balances(harness.store)[str(project_id)]
        assert projected == {
            "credits": account.credits,
            "posted": account.posted,
            "pending": account.pending_total,
            "available": account.available,
        }
        assert account.available == account.credits - account.posted - account.pending_total
        assert account.available >= 0
        charges = [e.request_id for e in events if isinstance(e, Account.ChargePosted)]
        releases = [e.request_id for e in events if isinstance(e, Account.ReservationReleased)]
        settled = charges + releases
        assert len(settled) == len(set(settled))  # one settlement per request, never two

    scenario()
    live = {table: dump_table(harness.store, table, order) for table, order in VIEW_TABLES.items()}
    harness.runner.rebuild()
    rebuilt = {
        table: dump_table(harness.store, table, order) for table, order in VIEW_TABLES.items()
    }
    assert rebuilt == live
