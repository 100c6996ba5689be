from datetime import UTC, datetime
from decimal import Decimal

import polars as pl
import pytest

from reconciliation.errors import InvalidReconciliationRequest, LedgerSchemaError
from reconciliation.ledger import export
from reconciliation.schema import (
    COLUMNS,
    LEDGER_ENTRIES_SCHEMA,
    entries_frame,
    find_value_problems,
    scan_entries,
    validate_schema,
)
from tests.unit.reconciliation.builders import LedgerBuilder


def small_ledger() -> pl.DataFrame:
    return (
        LedgerBuilder()
        .topup("2026-09-01 08:00", "100")
        .reserve("2026-09-01 09:00", "req_1", "2.5")
        .charge("2026-09-01 09:00:01.123456", "req_1", "0.123456789", provider_cost="0.100000001")
        .release("2026-09-01 09:00:01.123456", "req_1", "2.376543211")
        .adjustment("2026-09-02 10:00", "-1.25")
        .frame()
    )


def test_a_frame_missing_a_column_is_refused_with_the_column_named():
    frame = small_ledger().drop("provider_cost")
    with pytest.raises(LedgerSchemaError, match="provider_cost"):
        validate_schema(frame)


def test_money_stored_as_float_is_refused_rather_than_silently_accepted():
    frame = small_ledger().with_columns(pl.col("amount").cast(pl.Float64))
    with pytest.raises(LedgerSchemaError, match="amount is Float64"):
        validate_schema(frame)


def test_building_entries_from_a_float_amount_is_refused():
    with pytest.raises(LedgerSchemaError, match="float"):
        entries_frame(
            [
                {
                    "position": 1,
                    "entry_id": "a:1",
                    "entry_type": "topup",
                    "occurred_at": datetime(2026, 9, 1, tzinfo=UTC),
                    "project_id": "p",
                    "currency": "EUR",
                    "amount": 0.1,
                }
            ]
        )


def test_validation_returns_the_columns_in_contract_order_and_drops_extras():
    frame = (
        small_ledger().with_columns(pl.lit(1).alias("extra")).select(["extra", *reversed(COLUMNS)])
    )
    assert tuple(validate_schema(frame).collect_schema().names()) == COLUMNS


def test_value_checks_report_negative_amounts_and_unknown_entry_types():
    frame = small_ledger().with_columns(
        pl.when(pl.col("position") == 1)
        .then(pl.lit(Decimal("-5"), LEDGER_ENTRIES_SCHEMA["amount"]))
        .otherwise("amount")
        .alias("amount"),
        pl.when(pl.col("position") == 2)
        .then(pl.lit("refund"))
        .otherwise("entry_type")
        .alias("entry_type"),
    )
    problems = find_value_problems(frame.lazy())
    assert "negative amount on a non-adjustment entry: 1 row(s)" in problems
    assert "unknown entry_type: 1 row(s)" in problems


def test_a_well_formed_ledger_has_no_value_problems():
    assert find_value_problems(small_ledger().lazy()) == []


def test_csv_export_writes_money_as_exact_strings_and_reads_back_identically(tmp_path):
    ledger = small_ledger()
    path = export(ledger.lazy(), "csv", tmp_path / "ledger.csv")
    text = path.read_text()
    assert "0.123456789" in text and "0.100000001" in text and "-1.250000000" in text
    assert "2026-09-01T09:00:01.123456Z" in text
    assert "e-" not in text.lower()  # no exponent notation anywhere
    assert scan_entries(str(path)).collect().equals(ledger)


def test_parquet_export_keeps_the_contract_dtypes(tmp_path):
    ledger = small_ledger()
    path = export(ledger.lazy(), "parquet", tmp_path / "ledger.parquet")
    back = scan_entries(str(path)).collect()
    assert back.schema == LEDGER_ENTRIES_SCHEMA
    assert back.equals(ledger)


def test_export_refuses_an_unknown_format(tmp_path):
    with pytest.raises(InvalidReconciliationRequest, match="parquet or csv"):
        export(small_ledger().lazy(), "xlsx", tmp_path / "ledger.xlsx")
