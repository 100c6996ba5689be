"""Reconcile what the ledger says a provider cost against the provider's invoice.

The ledger side is the sum of `provider_cost` (in the provider's currency, before platform
fee and before FX) over `charge` entries of one provider in one calendar month (UTC), per
model — and per UTC day when the invoice has days. The model is the `upstream_model` the
provider was actually called with, falling back to `model` when the charge has none.

The heavy part (scanning millions of ledger rows) runs in polars, lazily, with projection
and predicate pushdown so only the needed columns and row groups are read. The result of
that aggregation is small (models × days), so the comparison itself runs in Python with
`Decimal`, exactly.

Statuses, from the ledger's point of view, with `difference = ledger_cost - invoice_cost`:

- `match`: |difference| ≤ max(tolerance, relative_tolerance × |invoice_cost|)
- `over`: the ledger recorded more than the provider invoiced (beyond tolerance)
- `under`: the ledger recorded less than the provider invoiced (beyond tolerance)
- `missing_in_ledger`: the invoice has a line the ledger has no charge for
- `missing_in_invoice`: the ledger has charges the invoice does not mention
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import polars as pl

from domain.errors import CurrencyMismatch
from domain.money import quantize_internal
from domain.usage import USAGE_SOURCE_CAPPED
from reconciliation.errors import InvalidReconciliationRequest, InvoiceFormatError
from reconciliation.invoices import Invoice
from reconciliation.schema import CHARGE_ENTRY_TYPES, ENTRY_CHARGE, validate_schema

STATUS_MATCH = "match"
STATUS_OVER = "over"
STATUS_UNDER = "under"
STATUS_MISSING_IN_LEDGER = "missing_in_ledger"
STATUS_MISSING_IN_INVOICE = "missing_in_invoice"
STATUSES = (
    STATUS_MATCH,
    STATUS_OVER,
    STATUS_UNDER,
    STATUS_MISSING_IN_LEDGER,
    STATUS_MISSING_IN_INVOICE,
)

DEFAULT_TOLERANCE = Decimal("0.01")
RELATIVE_QUANTUM = Decimal("0.000001")
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class ReconciliationLine:
    day: date | None
    model: str
    ledger_cost: Decimal
    invoice_cost: Decimal
    difference: Decimal
    relative_difference: Decimal | None  # difference / invoice_cost; None when invoice is 0
    status: str
    ledger_charges: int
    ledger_input_tokens: int
    ledger_output_tokens: int
    invoice_input_tokens: int | None
    invoice_output_tokens: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat() if self.day else None,
            "model": self.model,
            "ledger_cost": _money(self.ledger_cost),
            "invoice_cost": _money(self.invoice_cost),
            "difference": _money(self.difference),
            "relative_difference": _ratio(self.relative_difference),
            "status": self.status,
            "ledger_charges": self.ledger_charges,
            "ledger_input_tokens": self.ledger_input_tokens,
            "ledger_output_tokens": self.ledger_output_tokens,
            "invoice_input_tokens": self.invoice_input_tokens,
            "invoice_output_tokens": self.invoice_output_tokens,
        }


@dataclass(frozen=True, slots=True)
class ReconciliationTotals:
    ledger_cost: Decimal
    invoice_cost: Decimal
    difference: Decimal
    relative_difference: Decimal | None
    status: str
    lines_by_status: Mapping[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ledger_cost": _money(self.ledger_cost),
            "invoice_cost": _money(self.invoice_cost),
            "difference": _money(self.difference),
            "relative_difference": _ratio(self.relative_difference),
            "status": self.status,
            "lines_by_status": dict(self.lines_by_status),
        }


@dataclass(frozen=True, slots=True)
class ReconciliationReport:
    provider: str
    month: str
    currency: str
    per_day: bool
    tolerance: Decimal
    relative_tolerance: Decimal
    lines: tuple[ReconciliationLine, ...]
    totals: ReconciliationTotals
    ledger_charges: int
    ledger_charges_without_cost: int
    ledger_position: int | None  # highest ledger position the ledger side included
    invoice_layout: str
    invoice_source: str
    invoice_sha256: str
    invoice_lines_outside_month: int
    model_aliases: Mapping[str, str] = field(default_factory=dict)
    # Charges whose upstream usage was implausible and capped (domain/usage.py): the ledger
    # holds the capped cost, so an invoice line above it is expected there.
    ledger_charges_capped: int = 0

    @property
    def discrepancies(self) -> tuple[ReconciliationLine, ...]:
        return tuple(line for line in self.lines if line.status != STATUS_MATCH)

    @property
    def is_clean(self) -> bool:
        return not self.discrepancies and self.totals.status == STATUS_MATCH

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: money as exact strings, never floats."""
        return {
            "provider": self.provider,
            "month": self.month,
            "currency": self.currency,
            "per_day": self.per_day,
            "tolerance": _money(self.tolerance),
            "relative_tolerance": format(self.relative_tolerance, "f"),
            "totals": self.totals.to_dict(),
            "lines": [line.to_dict() for line in self.lines],
            "ledger_charges": self.ledger_charges,
            "ledger_charges_without_cost": self.ledger_charges_without_cost,
            "ledger_charges_capped": self.ledger_charges_capped,
            "ledger_position": self.ledger_position,
            "invoice_layout": self.invoice_layout,
            "invoice_source": self.invoice_source,
            "invoice_sha256": self.invoice_sha256,
            "invoice_lines_outside_month": self.invoice_lines_outside_month,
            "model_aliases": dict(self.model_aliases),
        }


def _money(amount: Decimal) -> str:
    return format(amount, "f")


def _ratio(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """`YYYY-MM` → [first instant of the month, first instant of the next month) in UTC."""
    text = month.strip()
    try:
        if len(text) != 7 or text[4] != "-":
            raise ValueError
        year, number = int(text[:4]), int(text[5:])
        start = datetime(year, number, 1, tzinfo=UTC)
    except ValueError:
        raise InvalidReconciliationRequest(
            f"month must be YYYY-MM, got {text[:20]!r}", param="month"
        ) from None
    end = (
        datetime(year + 1, 1, 1, tzinfo=UTC)
        if number == 12
        else datetime(year, number + 1, 1, tzinfo=UTC)
    )
    return start, end


def ledger_provider_costs(
    entries: pl.LazyFrame, provider: str, month: str, *, per_day: bool
) -> pl.DataFrame:
    """The ledger side: one row per (model[, day], provider_currency) with exact sums.

    Kept lazy end to end so polars pushes the column selection and the filters into the
    parquet scan (row groups outside the month are skipped by their statistics) and runs
    the aggregation on its streaming engine.
    """
    start, end = month_bounds(month)
    frame = validate_schema(entries)
    keys = ["model", "day", "provider_currency"] if per_day else ["model", "provider_currency"]
    query = (
        frame.filter(
            pl.col("entry_type").is_in(CHARGE_ENTRY_TYPES)
            & (pl.col("provider") == provider)
            & (pl.col("occurred_at") >= start)
            & (pl.col("occurred_at") < end)
        )
        .select(
            pl.coalesce("upstream_model", "model").fill_null("(unknown model)").alias("model"),
            pl.col("occurred_at").dt.date().alias("day"),
            "provider_cost",
            "provider_currency",
            "input_tokens",
            "output_tokens",
            "position",
            "entry_type",
            "usage_source",
        )
        .group_by(keys)
        .agg(
            pl.col("provider_cost").sum().alias("ledger_cost"),
            # A correction adjusts an earlier charge of the same request: not another charge.
            (pl.col("entry_type") == ENTRY_CHARGE).sum().alias("charges"),
            (pl.col("usage_source") == USAGE_SOURCE_CAPPED).sum().alias("charges_capped"),
            pl.col("provider_cost").is_null().sum().alias("charges_without_cost"),
            pl.col("input_tokens").sum().alias("input_tokens"),
            pl.col("output_tokens").sum().alias("output_tokens"),
            pl.col("position").max().alias("position"),
        )
    )
    return query.collect(engine="streaming")


def reconcile(
    entries: pl.LazyFrame,
    invoice: Invoice,
    provider: str,
    month: str,
    tolerance: Decimal = DEFAULT_TOLERANCE,
    *,
    relative_tolerance: Decimal = ZERO,
    model_aliases: Mapping[str, str] | None = None,
) -> ReconciliationReport:
    """Compare the ledger's provider costs with `invoice` for `provider` in `month`.

    `tolerance` is absolute, in the invoice currency, per line and for the totals;
    `relative_tolerance` (e.g. Decimal("0.001") for 0.1 %) widens it for large lines.
    `model_aliases` maps invoice model names to the ledger's upstream model ids.
    Refuses (CurrencyMismatch) when the ledger's provider costs are in another currency
    than the invoice: converting would hide exactly the FX questions finance asks.
    """
    provider_name = provider.strip().lower()
    if not provider_name:
        raise InvalidReconciliationRequest("provider must not be empty", param="provider")
    for name, value in (("tolerance", tolerance), ("relative_tolerance", relative_tolerance)):
        if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
            raise InvalidReconciliationRequest(f"{name} must be a non-negative Decimal", param=name)
    start, end = month_bounds(month)
    aliases = dict(model_aliases or {})

    invoice_lines, outside = _invoice_lines(
        invoice, provider_name, start.date(), end.date(), aliases
    )
    ledger = ledger_provider_costs(entries, provider_name, month, per_day=invoice.per_day)

    currencies = {value for value in ledger["provider_currency"].to_list() if value is not None}
    foreign = sorted(currencies - {invoice.currency})
    if foreign:
        raise CurrencyMismatch(
            f"the ledger recorded {provider_name} costs in {', '.join(foreign)} for {month} but the "
            f"invoice is in {invoice.currency}; reconcile per currency",
            ledger_currencies=tuple(sorted(currencies)),
            invoice_currency=invoice.currency,
        )

    ledger_lines: dict[tuple[date | None, str], dict[str, Any]] = {}
    for row in ledger.iter_rows(named=True):
        key = (row["day"] if invoice.per_day else None, row["model"])
        slot = ledger_lines.setdefault(
            key, {"cost": ZERO, "charges": 0, "input": 0, "output": 0, "position": None}
        )
        slot["cost"] += row["ledger_cost"] or ZERO
        slot["charges"] += row["charges"]
        slot["input"] += row["input_tokens"] or 0
        slot["output"] += row["output_tokens"] or 0
        if row["position"] is not None:
            slot["position"] = max(slot["position"] or 0, row["position"])

    lines: list[ReconciliationLine] = []
    for key in sorted(set(ledger_lines) | set(invoice_lines), key=_line_order):
        day, model = key
        from_ledger = ledger_lines.get(key)
        from_invoice = invoice_lines.get(key)
        # Nano-unit scale everywhere, so a missing side reads "0.000000000", not "0".
        ledger_cost = quantize_internal(from_ledger["cost"] if from_ledger else ZERO)
        invoice_cost = quantize_internal(from_invoice["cost"] if from_invoice else ZERO)
        difference = ledger_cost - invoice_cost
        if from_ledger is None:
            status = STATUS_MISSING_IN_LEDGER
        elif from_invoice is None:
            status = STATUS_MISSING_IN_INVOICE
        else:
            status = _compare(difference, invoice_cost, tolerance, relative_tolerance)
        lines.append(
            ReconciliationLine(
                day=day,
                model=model,
                ledger_cost=ledger_cost,
                invoice_cost=invoice_cost,
                difference=difference,
                relative_difference=_relative(difference, invoice_cost),
                status=status,
                ledger_charges=from_ledger["charges"] if from_ledger else 0,
                ledger_input_tokens=from_ledger["input"] if from_ledger else 0,
                ledger_output_tokens=from_ledger["output"] if from_ledger else 0,
                invoice_input_tokens=from_invoice["input"] if from_invoice else None,
                invoice_output_tokens=from_invoice["output"] if from_invoice else None,
            )
        )

    ledger_total = quantize_internal(sum((line.ledger_cost for line in lines), ZERO))
    invoice_total = quantize_internal(sum((line.invoice_cost for line in lines), ZERO))
    total_difference = ledger_total - invoice_total
    counts = Counter(line.status for line in lines)
    totals = ReconciliationTotals(
        ledger_cost=ledger_total,
        invoice_cost=invoice_total,
        difference=total_difference,
        relative_difference=_relative(total_difference, invoice_total),
        status=_compare(total_difference, invoice_total, tolerance, relative_tolerance),
        lines_by_status={status: counts.get(status, 0) for status in STATUSES},
    )
    positions = [slot["position"] for slot in ledger_lines.values() if slot["position"] is not None]
    return ReconciliationReport(
        provider=provider_name,
        month=month.strip(),
        currency=invoice.currency,
        per_day=invoice.per_day,
        tolerance=tolerance,
        relative_tolerance=relative_tolerance,
        lines=tuple(lines),
        totals=totals,
        ledger_charges=int(ledger["charges"].sum() or 0),
        ledger_charges_without_cost=int(ledger["charges_without_cost"].sum() or 0),
        ledger_charges_capped=int(ledger["charges_capped"].sum() or 0),
        ledger_position=max(positions) if positions else None,
        invoice_layout=invoice.layout,
        invoice_source=invoice.source_name,
        invoice_sha256=invoice.sha256,
        invoice_lines_outside_month=outside,
        model_aliases=aliases,
    )


def _line_order(key: tuple[date | None, str]) -> tuple[date, str]:
    day, model = key
    return (day or date.min, model)


def _compare(
    difference: Decimal, invoice_cost: Decimal, tolerance: Decimal, relative_tolerance: Decimal
) -> str:
    allowed = max(tolerance, relative_tolerance * abs(invoice_cost))
    if abs(difference) <= allowed:
        return STATUS_MATCH
    return STATUS_OVER if difference > 0 else STATUS_UNDER


def _relative(difference: Decimal, invoice_cost: Decimal) -> Decimal | None:
    if invoice_cost == 0:
        return None
    return (difference / invoice_cost).quantize(RELATIVE_QUANTUM, rounding=ROUND_HALF_EVEN)


def _invoice_lines(
    invoice: Invoice,
    provider: str,
    month_start: date,
    month_end: date,
    aliases: Mapping[str, str],
) -> tuple[dict[tuple[date | None, str], dict[str, Any]], int]:
    lines: dict[tuple[date | None, str], dict[str, Any]] = {}
    outside = 0
    for row in invoice.frame.iter_rows(named=True):
        named = row["provider"]
        if named is not None and named.strip().lower() != provider:
            raise InvoiceFormatError(
                f"{invoice.source_name}: invoice has a line for provider {named[:40]!r}, "
                f"but the reconciliation is for {provider!r}"
            )
        day = row["date"]
        if day is not None and not (month_start <= day < month_end):
            # Provider exports often cover a wider range than one month.
            outside += 1
            continue
        model = aliases.get(row["model"], row["model"])
        slot = lines.setdefault((day, model), {"cost": ZERO, "input": None, "output": None})
        slot["cost"] += row["cost"]
        for column, target in (("input_tokens", "input"), ("output_tokens", "output")):
            if row[column] is not None:
                slot[target] = (slot[target] or 0) + row[column]
    if not lines:
        raise InvoiceFormatError(
            f"{invoice.source_name}: no invoice line falls in {month_start:%Y-%m}"
        )
    return lines, outside


DISPLAY_QUANTUM = Decimal("0.000001")
STATUS_LABELS = {
    STATUS_MATCH: "match",
    STATUS_OVER: "OVER",
    STATUS_UNDER: "UNDER",
    STATUS_MISSING_IN_LEDGER: "MISSING IN LEDGER",
    STATUS_MISSING_IN_INVOICE: "MISSING IN INVOICE",
}


def render_table(report: ReconciliationReport) -> str:
    """A table for a person. Amounts are shown to 6 decimals, rounded half-even (display
    only: the report keeps the exact values); relative differences as percentages."""

    def amount(value: Decimal) -> str:
        return f"{value.quantize(DISPLAY_QUANTUM, rounding=ROUND_HALF_EVEN):,}"

    def percent(value: Decimal | None) -> str:
        if value is None:
            return "-"
        return f"{(value * 100).quantize(Decimal('0.01'), rounding=ROUND_HALF_EVEN):+}%"

    header = ["day", "model", "ledger", "invoice", "difference", "rel", "status"]
    rows = [
        [
            line.day.isoformat() if line.day else report.month,
            line.model,
            amount(line.ledger_cost),
            amount(line.invoice_cost),
            amount(line.difference),
            percent(line.relative_difference),
            STATUS_LABELS[line.status],
        ]
        for line in report.lines
    ]
    totals = report.totals
    total_row = [
        "TOTAL",
        "",
        amount(totals.ledger_cost),
        amount(totals.invoice_cost),
        amount(totals.difference),
        percent(totals.relative_difference),
        STATUS_LABELS[totals.status],
    ]
    numeric = {2, 3, 4, 5}
    widths = [
        max(len(str(cells[index])) for cells in [header, *rows, total_row])
        for index in range(len(header))
    ]

    def format_row(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(widths[index]) if index in numeric else cell.ljust(widths[index])
            for index, cell in enumerate(cells)
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    granularity = "per day and model" if report.per_day else "per model (monthly invoice)"
    counts = ", ".join(
        f"{count} {STATUS_LABELS[status].lower()}"
        for status, count in totals.lines_by_status.items()
        if count
    )
    lines = [
        f"Reconciliation {report.provider} {report.month} in {report.currency}, {granularity}",
        f"invoice {report.invoice_source} ({report.invoice_layout}); ledger: "
        + (
            f"{report.ledger_charges:,} charges up to position {report.ledger_position}; "
            if report.ledger_position is not None
            else "no charges; "
        )
        + f"tolerance {report.tolerance} {report.currency}"
        + (f" or {report.relative_tolerance * 100}%" if report.relative_tolerance else ""),
        "",
        format_row(header),
        rule,
        *(format_row(row) for row in rows),
        rule,
        format_row(total_row),
        "",
        f"{len(report.lines)} lines: {counts}; difference = ledger - invoice",
    ]
    if report.ledger_charges_without_cost:
        lines.append(
            f"warning: {report.ledger_charges_without_cost} ledger charges have no provider_cost"
        )
    if report.ledger_charges_capped:
        lines.append(
            f"flagged: {report.ledger_charges_capped} ledger charges were capped because the "
            "upstream reported impossible usage (usage_source capped): check them on the invoice"
        )
    if report.invoice_lines_outside_month:
        lines.append(
            f"note: {report.invoice_lines_outside_month} invoice lines outside {report.month} ignored"
        )
    return "\n".join(lines)
