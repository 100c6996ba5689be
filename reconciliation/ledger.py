"""Replay the ledger to any instant, and export it for finance tools.

Balance as of instant T, for one project (all sums over entries with occurred_at ≤ T):

- credits   = Σ topup.amount + Σ adjustment.amount   (adjustments are signed)
- charged   = Σ charge.amount                         (what the project paid, fee included)
- balance   = credits − charged                       (money the project holds)
- pending   = Σ amount of reservations that are still open at T, where a reservation is
              open at T when no `charge` and no `release` entry with the same request_id
              has occurred_at ≤ T. A request settles once (charge and/or release of the
              remainder), so its whole reservation leaves `pending` at the first of those
              entries, whatever the release amount says. A reservation without request_id
              can never be settled and stays pending (it should not exist; it is counted
              rather than hidden).
- available = balance − pending                       (what new requests can reserve)
- position  = highest event-log position among the entries counted (0 when none): the
              point of the log this answer reflects.

Ties: entries stamped exactly at T are included (≤ T), so "as of 12:00" includes a charge
recorded at 12:00:00.000000.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

from domain.clock import require_aware
from domain.errors import CurrencyMismatch, UnknownProject
from domain.money import quantize_internal
from reconciliation.errors import InvalidReconciliationRequest
from reconciliation.schema import (
    DECIMAL_COLUMNS,
    ENTRY_ADJUSTMENT,
    ENTRY_CHARGE,
    ENTRY_CORRECTION,
    ENTRY_RELEASE,
    ENTRY_RESERVATION,
    ENTRY_TOPUP,
    validate_schema,
)

EXPORT_FORMATS = ("parquet", "csv")
FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)
CSV_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%.6fZ"
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class BalanceAsOf:
    project_id: str
    as_of: datetime
    currency: str
    credits: Decimal
    charged: Decimal
    pending: Decimal
    available: Decimal
    position: int

    @property
    def balance(self) -> Decimal:
        return self.credits - self.charged

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: money as exact strings."""
        return {
            "project_id": self.project_id,
            "as_of": self.as_of.isoformat(),
            "currency": self.currency,
            "credits": format(self.credits, "f"),
            "charged": format(self.charged, "f"),
            "balance": format(self.balance, "f"),
            "pending": format(self.pending, "f"),
            "available": format(self.available, "f"),
            "position": self.position,
        }


def balance_as_of(
    entries: pl.LazyFrame, project_id: str, as_of: datetime, *, currency: str | None = None
) -> BalanceAsOf:
    """Replay `entries` (the ledger-entries contract) for one project up to `as_of`.

    `currency` is the project's ledger currency when the caller knows it (the store's
    account table): then `entries` may hold only the rows up to `as_of`, and a project with
    no entry yet answers zeros instead of "unknown project"."""
    instant = require_aware(as_of)
    project = validate_schema(entries).filter(pl.col("project_id") == project_id)
    upto = project.filter(pl.col("occurred_at") <= instant)

    settled = (
        upto.filter(
            pl.col("entry_type").is_in((ENTRY_CHARGE, ENTRY_RELEASE))
            & pl.col("request_id").is_not_null()
        )
        .select("request_id")
        .unique()
    )
    # An anti-join never matches a null key, so a reservation without request_id stays open.
    open_reservations = upto.filter(pl.col("entry_type") == ENTRY_RESERVATION).join(
        settled, on="request_id", how="anti"
    )
    sums_query = upto.group_by("entry_type").agg(pl.col("amount").sum().alias("amount"))
    pending_query = open_reservations.select(pl.col("amount").sum().alias("pending"))
    position_query = upto.select(pl.col("position").max().alias("position"))
    currency_query = project.select(pl.col("currency").unique().alias("currency"))
    sums, pending_frame, position_frame, currency_frame = pl.collect_all(
        [sums_query, pending_query, position_query, currency_query]
    )

    currencies = sorted(
        {value for value in currency_frame["currency"].to_list() if value} | {currency or ""} - {""}
    )
    if not currencies:
        raise UnknownProject(f"no ledger entries for project {project_id[:64]!r}")
    if len(currencies) > 1:
        raise CurrencyMismatch(
            f"project {project_id[:64]!r} has ledger entries in several currencies: "
            + ", ".join(currencies)
        )
    by_type = {row["entry_type"]: row["amount"] or ZERO for row in sums.iter_rows(named=True)}
    credits = by_type.get(ENTRY_TOPUP, ZERO) + by_type.get(ENTRY_ADJUSTMENT, ZERO)
    charged = by_type.get(ENTRY_CHARGE, ZERO) + by_type.get(ENTRY_CORRECTION, ZERO)
    pending = pending_frame["pending"][0] or ZERO
    position = position_frame["position"][0]
    # Quantized to the ledger's nano-units so "0" and "0.000000000" never differ in output.
    return BalanceAsOf(
        project_id=project_id,
        as_of=instant,
        currency=currencies[0],
        credits=quantize_internal(credits),
        charged=quantize_internal(charged),
        pending=quantize_internal(pending),
        available=quantize_internal(credits - charged - pending),
        position=int(position) if position is not None else 0,
    )


def export(entries: pl.LazyFrame, file_format: str, path: str | Path) -> Path:
    """Write the ledger entries to `path` as parquet or CSV, streaming.

    Parquet keeps the contract dtypes (Decimal money, UTC timestamps). CSV is for finance
    tools: money is written as exact decimal strings (all 9 or 12 decimals, no exponent,
    no float round trip), timestamps as ISO 8601 UTC with microseconds and a `Z`.
    `reconciliation.schema.scan_entries` reads both back into the contract.
    """
    kind = file_format.strip().lower()
    if kind not in EXPORT_FORMATS:
        raise InvalidReconciliationRequest(
            f"export format must be parquet or csv, got {file_format[:20]!r}", param="format"
        )
    target = Path(path)
    frame = validate_schema(entries)
    if kind == "parquet":
        frame.sink_parquet(target)
    else:
        csv_frame(frame).sink_csv(target)
    return target


def csv_frame(frame: FrameT) -> FrameT:
    """The CSV rendering of ledger entries: exact decimal strings, ISO UTC timestamps."""
    return frame.with_columns(
        pl.col("occurred_at").dt.strftime(CSV_TIMESTAMP_FORMAT),
        *[pl.col(name).cast(pl.Utf8) for name in DECIMAL_COLUMNS],
    )
