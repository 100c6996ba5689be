"""The ledger-entries projection and recorded reconciliations, on the real event store
(SQLite file) with the core's real commands, writer and projection runner."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import polars as pl
import pytest

from domain import commands as c
from domain.application import LedgerApplication, open_application
from domain.clock import FixedClock
from domain.errors import CurrencyMismatch
from domain.writer import run_now
from projections.db import ReadStore
from projections.ledger_entries import get_reconciliation, list_reconciliations
from projections.queries import dump_table, get_balance
from projections.runner import ProjectionRunner, default_views
from reconciliation.invoices import read_invoice
from reconciliation.ledger import balance_as_of
from reconciliation.reconcile import reconcile
from reconciliation.recording import record_command
from reconciliation.schema import find_value_problems, scan_entries
from reconciliation.sources import entries_for_project, entries_for_reconcile, export_store

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


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    data_dir = str(tmp_path / "data")
    app = open_application(None, data_dir)
    store = ReadStore(None, data_dir)
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


def test_every_money_moving_account_event_becomes_one_ledger_entry(ledger):
    project = ledger.project()
    ledger.request(project, "lg_req_a", tokens=(1200, 300), model="gpt-4o-mini")
    ledger.request(project, "lg_req_b", tokens=None, model="gpt-4o-mini")
    ledger.run(
        c.AdjustBalance(
            project_id=project, amount=Decimal("-1.5"), reason="goodwill", reference="adj-1"
        )
    )
    ledger.runner.catch_up()

    entries, position = entries_for_project(ledger.store, str(project))
    frame = entries.collect()
    assert frame["entry_type"].to_list() == [
        "topup",
        "reservation",
        "charge",
        "reservation",
        "release",
        "adjustment",
    ]
    charge = frame.filter(pl.col("entry_type") == "charge").row(0, named=True)
    # 1200 × 0.15/M + 300 × 0.60/M = 0.00036 USD, fee 5 %
    assert charge["provider_cost"] == Decimal("0.000360000")
    assert charge["fee_amount"] == Decimal("0.000018000")
    assert charge["amount"] == Decimal("0.000378000")
    assert (charge["provider"], charge["upstream_model"], charge["actor_id"]) == (
        "openai",
        "gpt-4o-mini-2024",
        "alice",
    )
    assert charge["price_id"] is not None and charge["usage_source"] == "provider"
    assert frame["position"].is_sorted() and position == frame["position"].max()
    assert find_value_problems(entries) == []


def test_the_replayed_balance_agrees_with_the_live_balance_view(ledger):
    project = ledger.project()
    ledger.request(project, "lg_req_a", tokens=(1200, 300), model="gpt-4o-mini")
    ledger.request(project, "lg_req_b", tokens=None, model="gpt-4o-mini")
    ledger.runner.catch_up()
    live = get_balance(ledger.store, str(project))
    entries, _ = entries_for_project(ledger.store, str(project))
    replayed = balance_as_of(entries, str(project), ledger.clock.now())
    assert live is not None
    assert format(replayed.credits, "f") == live["credits"]
    assert format(replayed.charged, "f") == live["posted"]
    assert format(replayed.pending, "f") == live["pending"]
    assert format(replayed.available, "f") == live["available"]


def test_the_balance_can_be_replayed_to_an_instant_inside_a_request(ledger):
    project = ledger.project()
    ledger.request(project, "lg_req_a", tokens=(1200, 300), model="gpt-4o-mini")
    ledger.runner.catch_up()
    entries, _ = entries_for_project(ledger.store, str(project))
    mid_request = START + timedelta(seconds=1)  # reserved at START, charged at START + 2 s
    during = balance_as_of(entries, str(project), mid_request)
    assert during.pending > 0 and during.charged == 0
    after = balance_as_of(entries, str(project), START + timedelta(seconds=2))
    assert after.pending == 0 and after.charged == Decimal("0.000378")


def test_dropping_the_view_and_replaying_gives_the_same_rows(ledger):
    project = ledger.project()
    ledger.request(project, "lg_req_a", tokens=(1200, 300), model="gpt-4o-mini")
    ledger.request(project, "lg_req_b", tokens=None, model="gpt-4o-mini")
    ledger.runner.catch_up()
    before = dump_table(ledger.store, "lg_ledger_entries", "position")
    ledger.runner.rebuild(["ledger_entries"])
    assert dump_table(ledger.store, "lg_ledger_entries", "position") == before
    ledger.runner.catch_up()  # a replay of applied positions is a no-op
    assert dump_table(ledger.store, "lg_ledger_entries", "position") == before


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_the_store_exports_in_batches_and_reads_back_exactly(ledger, tmp_path, file_format):
    project = ledger.project()
    for number in range(5):
        ledger.request(project, f"lg_req_{number}", tokens=(1000 + number, 7), model="gpt-4o-mini")
    ledger.runner.catch_up()
    path, rows = export_store(
        ledger.store, file_format, tmp_path / f"l.{file_format}", batch_rows=4
    )
    assert rows == 1 + 5 * 2
    direct, _ = entries_for_project(ledger.store, str(project))
    assert scan_entries(str(path)).collect().equals(direct.collect())


def write_invoice(tmp_path: Path, cost: str) -> Path:
    path = tmp_path / "openai-2026-09.csv"
    path.write_text(f"model,cost,currency\ngpt-4o-mini-2024,{cost},USD\n")
    return path


def reconcile_store(ledger: Ledger, invoice: Path):  # type: ignore[no-untyped-def]
    entries, _ = entries_for_reconcile(ledger.store, "openai", "2026-09")
    return reconcile(entries, read_invoice(invoice), "openai", "2026-09", Decimal("0"))


def test_a_reconciliation_is_recorded_once_and_listed_on_the_read_side(ledger, tmp_path):
    project = ledger.project()
    ledger.request(project, "lg_req_a", tokens=(1200, 300), model="gpt-4o-mini")
    ledger.runner.catch_up()
    report = reconcile_store(ledger, write_invoice(tmp_path, "0.00036"))
    assert report.is_clean and report.ledger_charges == 1

    first = ledger.run(record_command(report))
    again = ledger.run(record_command(report))
    assert first["recorded"] is True and again["recorded"] is False  # type: ignore[index]
    assert first["reconciliation_id"] == again["reconciliation_id"]  # type: ignore[index]
    ledger.runner.catch_up()

    listed = list_reconciliations(ledger.store, provider="openai")
    assert len(listed["data"]) == 1
    record = listed["data"][0]
    assert (record["status"], record["ledger_cost"], record["invoice_cost"]) == (
        "match",
        "0.000360000",
        "0.000360000",
    )
    assert record["invoice"]["source"] == "openai-2026-09.csv"
    assert record["adjustment"] is None
    detail, _ = get_reconciliation(ledger.store, record["id"])
    assert detail is not None and detail["lines"][0]["model"] == "gpt-4o-mini-2024"


def test_adjust_posts_a_new_adjustment_event_and_never_edits_the_charge(ledger, tmp_path):
    project = ledger.project()
    ledger.request(project, "lg_req_a", tokens=(1200, 300), model="gpt-4o-mini")
    ledger.runner.catch_up()
    report = reconcile_store(ledger, write_invoice(tmp_path, "0.50036"))  # invoice 0.50 higher
    assert report.totals.status == "under"

    outcome = ledger.run(record_command(report, adjust_project_id=project))
    assert outcome["adjustment_amount"] == Decimal("-0.5")  # type: ignore[index]
    ledger.runner.catch_up()

    entries, _ = entries_for_project(ledger.store, str(project))
    frame = entries.collect()
    assert frame["entry_type"].to_list()[-1] == "adjustment"
    assert frame.filter(pl.col("entry_type") == "charge")["amount"].to_list() == [
        Decimal("0.000378")
    ]
    assert get_balance(ledger.store, str(project))["credits"] == "49.500000000"  # type: ignore[index]
    record = list_reconciliations(ledger.store)["data"][0]
    assert record["adjustment"] == {"project_id": str(project), "amount": "-0.500000000"}
    # Running it again neither records nor adjusts a second time.
    assert ledger.run(record_command(report, adjust_project_id=project))["recorded"] is False  # type: ignore[index]


def test_adjusting_a_project_in_another_currency_is_refused_and_records_nothing(ledger, tmp_path):
    project = ledger.project()
    ledger.request(project, "lg_req_a", tokens=(1200, 300), model="gpt-4o-mini")
    euro_project = ledger.project(currency="EUR")
    ledger.runner.catch_up()
    report = reconcile_store(ledger, write_invoice(tmp_path, "0.50036"))
    with pytest.raises(CurrencyMismatch):
        ledger.run(record_command(report, adjust_project_id=euro_project))
    ledger.runner.catch_up()
    assert list_reconciliations(ledger.store)["data"] == []
