"""`ledgergate ledger balance|export` and `ledgergate reconcile`, end to end through main()."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest

from gateway.cli import main
from reconciliation.schema import scan_entries
from tests.integration.finance_support import START, Ledger, ledger_fixture  # noqa: F401


@pytest.fixture
def seeded(
    ledger: Ledger,  # noqa: F811
    backend: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
):  # type: ignore[no-untyped-def]
    for name, value in backend.items():
        monkeypatch.setenv(name, value)
    project = ledger.project()
    ledger.request(project, "lg_req_a", tokens=(1200, 300), model="gpt-4o-mini")
    ledger.request(project, "lg_req_b", tokens=(2000, 100), model="gpt-4o-mini")
    # The CLI brings the views up to date itself: nothing is projected here on purpose.
    return project


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict, str]:  # type: ignore[type-arg]
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, json.loads(captured.out), captured.err


def test_ledger_balance_replays_to_the_requested_instant(seeded, capsys):
    before = (START - timedelta(days=1)).isoformat()
    status, early, _ = run(capsys, "ledger", "balance", "--project", str(seeded), "--as-of", before)
    assert status == 0
    assert early["credits"] == "0.000000000" and early["currency"] == "USD"
    status, now, _ = run(
        capsys, "ledger", "balance", "--project", str(seeded), "--as-of", "2026-12-01T00:00:00Z"
    )
    assert now["credits"] == "50.000000000"
    assert Decimal(now["charged"]) == Decimal("0.000378") + Decimal("0.000378")
    assert now["pending"] == "0.000000000"
    assert now["as_of_position"] >= now["position"] > 0


def test_ledger_balance_of_an_unknown_project_is_a_json_error(seeded, capsys):
    status, body, _ = run(
        capsys,
        "ledger",
        "balance",
        "--project",
        "00000000-0000-0000-0000-000000000000",
        "--as-of",
        "2026-12-01T00:00:00Z",
    )
    assert status == 1 and body["error"]["code"] == "project_not_found"


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_ledger_export_writes_every_entry(seeded, capsys, tmp_path, file_format):
    output = tmp_path / f"out.{file_format}"
    status, body, _ = run(
        capsys, "ledger", "export", "--format", file_format, "--output", str(output)
    )
    assert status == 0 and body["rows"] == 5  # topup + 2 × (reservation, charge)
    frame = scan_entries(str(output)).collect()
    assert frame["entry_type"].to_list() == [
        "topup",
        "reservation",
        "charge",
        "reservation",
        "charge",
    ]


def test_reconcile_prints_the_table_records_the_event_and_adjusts_on_request(
    seeded, capsys, tmp_path
):
    invoice = tmp_path / "invoice.csv"
    # Ledger provider cost: 0.00036 + 0.00036 = 0.00072 USD on 2026-09-01.
    invoice.write_text(
        "date,provider,model,input_tokens,output_tokens,cost,currency\n"
        "2026-09-01,openai,gpt-4o-mini-2024,,,0.10072,USD\n"
    )
    argv = ("reconcile", "--provider", "openai", "--month", "2026-09", "--invoice", str(invoice))
    status, body, table = run(capsys, *argv)
    assert status == 0
    assert "gpt-4o-mini-2024" in table and "UNDER" in table
    assert body["recorded"] is True and body["status"] == "under"
    assert body["totals"]["difference"] == "-0.100000000"
    assert body["adjustment_amount"] is None
    assert [line["status"] for line in body["discrepancies"]] == ["under"]

    status, adjusted, _ = run(capsys, *argv, "--adjust", "--project", str(seeded))
    assert status == 0 and adjusted["adjustment_amount"] == "-0.100000000"
    status, again, _ = run(capsys, *argv, "--adjust", "--project", str(seeded))
    assert again["recorded"] is False  # same invoice, same ledger: nothing new

    status, balance, _ = run(
        capsys, "ledger", "balance", "--project", str(seeded), "--as-of", "2099-01-01T00:00:00Z"
    )
    assert balance["credits"] == "49.900000000"


def test_reconcile_refuses_adjust_without_a_project_and_a_malformed_invoice(
    seeded, capsys, tmp_path
):
    invoice = tmp_path / "invoice.csv"
    invoice.write_text("date,model,currency\n2026-09-01,gpt-4o-mini-2024,USD\n")
    argv = ("reconcile", "--provider", "openai", "--month", "2026-09", "--invoice", str(invoice))
    status, body, _ = run(capsys, *argv, "--adjust")
    assert status == 1 and "--project" in body["error"]["message"]
    status, body, _ = run(capsys, *argv)
    assert status == 1 and body["error"]["code"] == "invalid_invoice"
    assert "cost" in body["error"]["message"]
