"""The ledger-entries contract: one row per money-moving ledger event.

This is the shape shared by the `ledger_entries` projection table and by the export files
(`ledgergate ledger export`). Everything in `reconciliation/` reads ledger data through
this schema, so a change here is a contract change with the core.

Money columns are Decimal, never Float64: sums over millions of rows must be exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import polars as pl

from reconciliation.errors import LedgerSchemaError

MONEY_DTYPE = pl.Decimal(38, 9)
FX_RATE_DTYPE = pl.Decimal(38, 12)
TIMESTAMP_DTYPE = pl.Datetime("us", "UTC")

ENTRY_TOPUP = "topup"
ENTRY_RESERVATION = "reservation"
ENTRY_CHARGE = "charge"
ENTRY_RELEASE = "release"
ENTRY_ADJUSTMENT = "adjustment"
# A swept request served after all: the signed difference to its real charge (its
# provider_cost and tokens are differences too), counted with the charges.
ENTRY_CORRECTION = "correction"
ENTRY_TYPES: tuple[str, ...] = (
    ENTRY_TOPUP,
    ENTRY_RESERVATION,
    ENTRY_CHARGE,
    ENTRY_RELEASE,
    ENTRY_ADJUSTMENT,
    ENTRY_CORRECTION,
)
CHARGE_ENTRY_TYPES: tuple[str, ...] = (ENTRY_CHARGE, ENTRY_CORRECTION)

# Column order is part of the contract: export files are written in this order.
LEDGER_ENTRIES_SCHEMA = pl.Schema(
    {
        "position": pl.Int64(),
        "entry_id": pl.Utf8(),
        "entry_type": pl.Utf8(),
        "occurred_at": TIMESTAMP_DTYPE,
        "project_id": pl.Utf8(),
        "request_id": pl.Utf8(),
        "key_id": pl.Utf8(),
        "actor_id": pl.Utf8(),
        "currency": pl.Utf8(),
        "amount": MONEY_DTYPE,
        "provider": pl.Utf8(),
        "model": pl.Utf8(),
        "upstream_model": pl.Utf8(),
        "input_tokens": pl.Int64(),
        "output_tokens": pl.Int64(),
        "cached_tokens": pl.Int64(),
        "provider_cost": MONEY_DTYPE,
        "provider_currency": pl.Utf8(),
        "fx_rate": FX_RATE_DTYPE,
        "fee_amount": MONEY_DTYPE,
        "key_source": pl.Utf8(),
        "price_id": pl.Utf8(),
        "fx_rate_id": pl.Utf8(),
        "usage_source": pl.Utf8(),
    }
)

COLUMNS: tuple[str, ...] = tuple(LEDGER_ENTRIES_SCHEMA.names())
NOT_NULL_COLUMNS: frozenset[str] = frozenset(
    {"position", "entry_id", "entry_type", "occurred_at", "project_id", "currency", "amount"}
)
MONEY_COLUMNS: tuple[str, ...] = ("amount", "provider_cost", "fee_amount")
DECIMAL_COLUMNS: tuple[str, ...] = (*MONEY_COLUMNS, "fx_rate")


def validate_schema(entries: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    """Check column names and dtypes (cheap: reads only the schema) and return a LazyFrame
    with the columns in contract order.

    Decimal columns with a different precision/scale are refused rather than cast, because a
    silent rescale would change money values; extra columns are dropped.
    """
    frame = entries.lazy()
    actual = frame.collect_schema()
    missing = [name for name in COLUMNS if name not in actual]
    if missing:
        raise LedgerSchemaError(
            f"ledger entries are missing column(s): {', '.join(missing)}",
            missing_columns=tuple(missing),
        )
    wrong = [
        f"{name} is {actual[name]}, expected {dtype}"
        for name, dtype in LEDGER_ENTRIES_SCHEMA.items()
        if actual[name] != dtype
    ]
    if wrong:
        raise LedgerSchemaError("ledger entries have wrong column types: " + "; ".join(wrong))
    return frame.select(COLUMNS)


def find_value_problems(entries: pl.LazyFrame, *, limit: int = 10) -> list[str]:
    """Row-level checks of the contract (a full scan: used by tests, export and `--check`,
    not on the hot reconcile path). Returns human-readable problems, at most `limit`."""
    frame = validate_schema(entries)
    checks: list[tuple[str, pl.Expr]] = [
        (f"{name} is null", pl.col(name).is_null()) for name in sorted(NOT_NULL_COLUMNS)
    ]
    checks += [
        ("unknown entry_type", ~pl.col("entry_type").is_in(ENTRY_TYPES)),
        (
            "negative amount on a non-adjustment entry",
            ~pl.col("entry_type").is_in((ENTRY_ADJUSTMENT, ENTRY_CORRECTION))
            & (pl.col("amount") < 0),
        ),
        (
            "charge without provider",
            pl.col("entry_type").is_in(CHARGE_ENTRY_TYPES) & pl.col("provider").is_null(),
        ),
        (
            "provider_cost without provider_currency",
            pl.col("provider_cost").is_not_null() & pl.col("provider_currency").is_null(),
        ),
    ]
    counts = frame.select(
        [check.sum().alias(label) for label, check in checks]
        + [(pl.col("position").diff() <= 0).sum().alias("position not strictly increasing")]
    ).collect()
    problems = [
        f"{label}: {int(counts[label][0])} row(s)"
        for label in counts.columns
        if counts[label][0] is not None and int(counts[label][0]) > 0
    ]
    return problems[:limit]


def entries_frame(rows: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """Build a contract-shaped DataFrame from dict rows; absent keys become null.

    Used by the projection reader and tests. Money must be given as Decimal (or str/int),
    never float: polars would otherwise go through a binary float.
    """
    materialised = [dict(row) for row in rows]
    for index, row in enumerate(materialised):
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise LedgerSchemaError(
                f"row {index} has unknown column(s): {', '.join(sorted(unknown))}"
            )
        for name in DECIMAL_COLUMNS:
            if isinstance(row.get(name), float):
                raise LedgerSchemaError(f"row {index}: {name} is a float; money must be Decimal")
    columns = {
        name: pl.Series(name, [row.get(name) for row in materialised], dtype=dtype, strict=True)
        for name, dtype in LEDGER_ENTRIES_SCHEMA.items()
    }
    return pl.DataFrame(columns)


def empty_entries() -> pl.DataFrame:
    return pl.DataFrame(schema=LEDGER_ENTRIES_SCHEMA)


def scan_entries(path: str, *, file_format: str | None = None) -> pl.LazyFrame:
    """Lazily open an export file (parquet or the CSV written by `export`) with the contract
    dtypes. CSV money columns are exact decimal strings, parsed straight to Decimal."""
    kind = file_format or ("csv" if str(path).lower().endswith(".csv") else "parquet")
    if kind == "parquet":
        return validate_schema(pl.scan_parquet(path))
    if kind == "csv":
        text_schema = {
            name: (pl.Utf8() if name in DECIMAL_COLUMNS or name == "occurred_at" else dtype)
            for name, dtype in LEDGER_ENTRIES_SCHEMA.items()
        }
        frame = pl.scan_csv(path, schema=text_schema)
        return frame.with_columns(
            pl.col("occurred_at").str.to_datetime(
                "%Y-%m-%dT%H:%M:%S%.fZ", time_unit="us", time_zone="UTC"
            ),
            *[pl.col(name).cast(MONEY_DTYPE) for name in MONEY_COLUMNS],
            pl.col("fx_rate").cast(FX_RATE_DTYPE),
        ).select(COLUMNS)
    raise LedgerSchemaError(f"unknown ledger file format {kind!r}; use parquet or csv")
