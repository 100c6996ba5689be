"""Ledger entries from the read store (the `ledger_entries` projection) as a contract frame.

The filters run in SQL (see projections.ledger_entries.select_ledger_entries) so a reconcile
reads one provider-month of charges and a balance reads one project, not the whole ledger.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from domain.clock import require_aware
from projections.db import ReadStore
from projections.ledger_entries import (
    LEDGER_COLUMNS,
    iter_ledger_entry_batches,
    project_currency,
    select_ledger_entries,
)
from reconciliation.errors import InvalidReconciliationRequest
from reconciliation.ledger import EXPORT_FORMATS, BalanceAsOf, balance_as_of, csv_frame
from reconciliation.reconcile import month_bounds
from reconciliation.schema import (
    DECIMAL_COLUMNS,
    LEDGER_ENTRIES_SCHEMA,
    empty_entries,
    validate_schema,
)
from reconciliation.schema import ENTRY_CHARGE as CHARGE

# projections.db.iso writes "2026-09-01T12:00:00.000000+00:00".
SQLITE_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.f"


def rows_to_entries(
    rows: list[tuple[Any, ...]], dialect: str, columns: Sequence[str] = LEDGER_COLUMNS
) -> pl.LazyFrame:
    """Rows holding `columns` (in LEDGER_COLUMNS order) → a LazyFrame in the contract's
    dtypes; columns not read are typed nulls, so every consumer sees the full contract."""
    if tuple(LEDGER_ENTRIES_SCHEMA.names()) != LEDGER_COLUMNS:
        raise RuntimeError("projection columns and reconciliation schema have drifted apart")
    if not rows:
        return empty_entries().lazy()
    present = [name for name in LEDGER_COLUMNS if name in columns]
    if dialect == "sqlite":
        # Money and time arrive as text: parse them in polars, never through float.
        text_like = set(DECIMAL_COLUMNS) | {"occurred_at"}
        schema = {
            name: pl.Utf8() if name in text_like else LEDGER_ENTRIES_SCHEMA[name]
            for name in present
        }
        frame = pl.DataFrame(rows, schema=schema, orient="row")
        conversions = [
            pl.col(name).cast(LEDGER_ENTRIES_SCHEMA[name])
            for name in DECIMAL_COLUMNS
            if name in schema
        ]
        if "occurred_at" in schema:
            # projections.db.iso always writes "+00:00": parse the UTC wall time directly.
            conversions.append(
                pl.col("occurred_at")
                .str.slice(0, 26)
                .str.to_datetime(SQLITE_TIME_FORMAT, time_unit="us", time_zone="UTC")
            )
        frame = frame.with_columns(conversions)
    else:
        # psycopg returns Decimal and aware datetime: polars takes them exactly.
        frame = pl.DataFrame(
            rows, schema={name: LEDGER_ENTRIES_SCHEMA[name] for name in present}, orient="row"
        )
        if "occurred_at" in present:
            frame = frame.with_columns(pl.col("occurred_at").dt.convert_time_zone("UTC"))
    missing = [
        pl.lit(None, LEDGER_ENTRIES_SCHEMA[name]).alias(name)
        for name in LEDGER_COLUMNS
        if name not in present
    ]
    return validate_schema(frame.with_columns(missing) if missing else frame)


# What reconcile reads of a charge; the rest of the contract stays null.
RECONCILE_COLUMNS: tuple[str, ...] = tuple(
    name
    for name in LEDGER_COLUMNS
    if name
    in {
        "position",
        "entry_type",
        "occurred_at",
        "provider",
        "model",
        "upstream_model",
        "input_tokens",
        "output_tokens",
        "provider_cost",
        "provider_currency",
    }
)


def entries_for_reconcile(store: ReadStore, provider: str, month: str) -> tuple[pl.LazyFrame, int]:
    """One provider's charges in one month, and the view position they reflect."""
    start, end = month_bounds(month)
    rows, dialect, position = select_ledger_entries(
        store,
        provider=provider.strip().lower(),
        entry_type=CHARGE,
        since=start,
        before=end,
        columns=RECONCILE_COLUMNS,
    )
    return rows_to_entries(rows, dialect, RECONCILE_COLUMNS), position


def entries_for_project(
    store: ReadStore, project_id: str, until: datetime | None = None
) -> tuple[pl.LazyFrame, int]:
    rows, dialect, position = select_ledger_entries(store, project_id=project_id, until=until)
    return rows_to_entries(rows, dialect), position


BALANCE_COLUMNS: tuple[str, ...] = tuple(
    name
    for name in LEDGER_COLUMNS
    if name
    in {"position", "entry_type", "occurred_at", "project_id", "request_id", "currency", "amount"}
)


def balance_from_store(
    store: ReadStore, project_id: str, as_of: datetime
) -> tuple[BalanceAsOf, int]:
    """A project's balance as of an instant, reading only its entries up to that instant
    (and only the columns the replay needs). Returns the balance and the view position."""
    instant = require_aware(as_of)
    rows, dialect, position = select_ledger_entries(
        store, project_id=project_id, until=instant, columns=BALANCE_COLUMNS
    )
    entries = rows_to_entries(rows, dialect, BALANCE_COLUMNS)
    return (
        balance_as_of(entries, project_id, instant, currency=project_currency(store, project_id)),
        position,
    )


def export_store(
    store: ReadStore,
    file_format: str,
    path: str | Path,
    *,
    batch_rows: int = 100_000,
    progress: Callable[[int], None] | None = None,
) -> tuple[Path, int]:
    """Export the whole ledger-entries view batch by batch (bounded memory), in the same
    file formats as reconciliation.ledger.export. Returns the path and the row count."""
    kind = file_format.strip().lower()
    if kind not in EXPORT_FORMATS:
        raise InvalidReconciliationRequest(
            f"export format must be parquet or csv, got {file_format[:20]!r}", param="format"
        )
    target = Path(path)
    written = 0
    parquet_writer: pq.ParquetWriter | None = None
    with ExitStack() as stack:
        csv_file = stack.enter_context(target.open("wb")) if kind == "csv" else None
        for rows, dialect in iter_ledger_entry_batches(store, batch_rows=batch_rows):
            frame = rows_to_entries(rows, dialect).collect()
            if csv_file is not None:
                csv_frame(frame).write_csv(csv_file, include_header=written == 0)
            else:
                table = frame.to_arrow()
                if parquet_writer is None:
                    parquet_writer = stack.enter_context(pq.ParquetWriter(target, table.schema))
                parquet_writer.write_table(table)
            written += frame.height
            if progress is not None:
                progress(written)
        if written == 0:
            # An empty ledger still exports a file with the contract's header/schema.
            if csv_file is not None:
                csv_frame(empty_entries()).write_csv(csv_file)
            else:
                empty_entries().write_parquet(target)
    return target, written
