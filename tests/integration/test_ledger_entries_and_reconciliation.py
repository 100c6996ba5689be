"""The ledger-entries projection and recorded reconciliations, on the real event store
(SQLite file and real PostgreSQL) with the core's real commands, writer and projection
runner."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from domain import commands as c
from domain.errors import CurrencyMismatch
from projections.ledger_entries import get_reconciliation, list_reconciliations
from projections.queries import dump_table, get_balance
from reconciliation.invoices import read_invoice
from reconciliation.ledger import balance_as_of
from reconciliation.reconcile import reconcile
from reconciliation.recording import record_command
from reconciliation.schema import find_value_problems, scan_entries
from reconciliation.sources import entries_for_project, entries_for_reconcile, export_store
from tests.integration.finance_support import START, Ledger, ledger_fixture  # noqa: F401
from tests.support.builders import admit_request, complete_request, request_facts


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


def test_a_charge_and_its_correction_in_one_batch_give_the_differences(ledger):
    """The view writes a batch's entries in one statement at its end; a correction reads
    its request's earlier charge, which may still be among them."""
    project = ledger.project()
    facts = request_facts(
        project, request_id="lg_req_c", endpoint="/v1/chat/completions", model="gpt-4o-mini",
        at=ledger.clock.now(),
    )  # fmt: skip
    ledger.run(admit_request(facts, input_tokens=1000, output_tokens=2000))
    ledger.run(c.AbandonRequest(request_id="lg_req_c"))  # swept: the estimated input only
    ledger.run(complete_request("lg_req_c", (1000, 1500)))  # then answered: corrected
    ledger.runner.catch_up()  # all of it in one batch

    frame = entries_for_project(ledger.store, str(project))[0].collect()
    assert frame["entry_type"].to_list() == ["topup", "reservation", "charge", "correction"]
    charge, correction = (
        frame.filter(pl.col("entry_type") == kind).row(0, named=True)
        for kind in ("charge", "correction")
    )
    assert (charge["input_tokens"], charge["output_tokens"]) == (1000, 0)
    assert (correction["input_tokens"], correction["output_tokens"]) == (0, 1500)
    # 1500 × 0.60/M = 0.0009 USD more, fee 5 %
    assert correction["provider_cost"] == Decimal("0.000900000")
    assert correction["amount"] == Decimal("0.000945000")
    assert correction["price_id"] == charge["price_id"] is not None
    before = dump_table(ledger.store, "lg_ledger_entries", "position")
    ledger.runner.rebuild(["ledger_entries"])
    assert dump_table(ledger.store, "lg_ledger_entries", "position") == before


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
