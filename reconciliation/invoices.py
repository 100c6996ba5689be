"""Invoice readers: turn a provider's invoice or cost export into one normalised frame.

Normalised invoice frame (`INVOICE_SCHEMA`), one row per (day, model) or per model:

| column        | dtype          | meaning                                                  |
|---------------|----------------|----------------------------------------------------------|
| date          | Date, nullable | UTC day the cost was incurred; null for a per-month line |
| provider      | Utf8, nullable | provider named on the line, if the file names one        |
| model         | Utf8           | model (or line item) the cost is for                     |
| input_tokens  | Int64, nullable|                                                          |
| output_tokens | Int64, nullable|                                                          |
| cost          | Decimal(38, 9) | amount invoiced, in `currency` (may be negative: credit) |
| currency      | Utf8           | ISO code, upper case                                     |

Accepted layouts (auto-detected from the header, or forced with `layout=`):

1. `generic` — Ledgergate's documented CSV. Header (any order, extra columns ignored):
   `date,provider,model,input_tokens,output_tokens,cost,currency`.
   Required: `model`, `cost`, `currency`. Optional: `date` (YYYY-MM-DD, UTC day; leave the
   column out, or every cell empty, for a per-month invoice), `provider` (if present every
   non-empty value must equal the provider being reconciled), `input_tokens`,
   `output_tokens` (non-negative integers). `cost` is a plain decimal string: `12.50`,
   `-0.30`; no currency symbols, no thousands separators, no exponent. One file is either
   entirely per-day or entirely per-month.

2. `openai_costs` — the OpenAI usage dashboard's cost export / Costs API
   (`/v1/organization/costs`) flattened to CSV. Columns read: `start_time_iso` (or
   `start_time`, Unix seconds), `end_time_iso` (or `end_time`), `amount_value`,
   `amount_currency`, `line_item`. The model is `line_item` up to its first comma
   (OpenAI writes line items as `"<model>, input"` / `"<model>, output"`). The export must be
   grouped by line item (an empty `line_item` cannot be attributed to a model and is
   refused). 1-day buckets give a per-day invoice; buckets spanning exactly one calendar
   month give a per-month invoice.

3. `anthropic_costs` — the Claude Console "Cost" page CSV export. Columns read:
   `usage_date_utc` (YYYY-MM-DD, a time part is ignored), `model`, `cost_usd`, and
   `cost_type`/`token_type` when present. Currency is USD (named in the column). Rows with no
   model (web search, code execution) are kept under `"(<cost_type>)"` so they show up as
   missing in the ledger instead of vanishing. The Console writes display names such as
   `Claude Sonnet 4.5`: pass `model_aliases` to `reconcile` to map them to API model ids.

What was verified, and how (no live access here): the OpenAI cost columns match the field
names of the Costs API objects (`amount.value`, `amount.currency`, `line_item`,
`start_time`, `end_time`) and a published dashboard export header
(`start_time,end_time,start_time_iso,end_time_iso,amount_value,amount_currency,line_item,
project_id,organization_id,organization_name`) found in public repositories; the Anthropic
header (`usage_date_utc,model,workspace,api_key,usage_type,context_window,token_type,
cost_usd[,list_price_usd],cost_type[,inference_geo,speed]`) was found in two independent
public tools that parse real Console exports. Neither vendor documents the CSV formally, so
readers require only the columns they use and ignore the rest.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import polars as pl

from domain.money import INTERNAL_QUANTUM
from reconciliation.errors import InvoiceFormatError
from reconciliation.schema import MONEY_DTYPE

INVOICE_SCHEMA = pl.Schema(
    {
        "date": pl.Date(),
        "provider": pl.Utf8(),
        "model": pl.Utf8(),
        "input_tokens": pl.Int64(),
        "output_tokens": pl.Int64(),
        "cost": MONEY_DTYPE,
        "currency": pl.Utf8(),
    }
)

LAYOUT_GENERIC = "generic"
LAYOUT_OPENAI = "openai_costs"
LAYOUT_ANTHROPIC = "anthropic_costs"
LAYOUTS = (LAYOUT_GENERIC, LAYOUT_OPENAI, LAYOUT_ANTHROPIC)

# An invoice is a human-sized document; a limit keeps a wrong file (say, a ledger export
# passed by mistake) from being parsed row by row in Python for minutes.
INVOICE_ROWS_MAX = 2_000_000
CELL_PREVIEW_CHARS = 40


@dataclass(frozen=True, slots=True)
class Invoice:
    """A normalised invoice: `frame` follows INVOICE_SCHEMA."""

    frame: pl.DataFrame
    layout: str
    currency: str
    per_day: bool
    source_name: str
    rows_read: int
    sha256: str  # of the file's bytes: provenance for the recorded reconciliation


def read_invoice(
    source: str | Path | bytes,
    *,
    layout: str = "auto",
    source_name: str | None = None,
) -> Invoice:
    """Read an invoice CSV from a path or bytes. `layout` is `auto` or one of LAYOUTS."""
    if isinstance(source, bytes):
        raw = source
        name = source_name or "invoice"
    else:
        path = Path(source)
        try:
            raw = path.read_bytes()
        except OSError as error:
            raise InvoiceFormatError(
                f"cannot read invoice file {path.name!r}: {error.strerror}"
            ) from error
        name = source_name or path.name
    try:
        # utf-8-sig: spreadsheet tools often prepend a byte-order mark to CSV exports.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InvoiceFormatError(f"{name}: invoice is not UTF-8 text") from error
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise InvoiceFormatError(f"{name}: invoice file is empty") from None
    except csv.Error as error:
        raise InvoiceFormatError(f"{name}: malformed CSV header: {error}") from error
    columns = [cell.strip().lower() for cell in header]
    if len(set(columns)) != len(columns):
        raise InvoiceFormatError(f"{name}: duplicate column names in header")
    chosen = detect_layout(columns) if layout == "auto" else layout
    if chosen not in LAYOUTS:
        raise InvoiceFormatError(
            f"unknown invoice layout {layout!r}; use auto or one of {', '.join(LAYOUTS)}"
        )
    rows = _records(reader, columns, name)
    parser = _PARSERS[chosen]
    records = parser(rows, columns, name)
    return _finish(records, chosen, name, len(rows), hashlib.sha256(raw).hexdigest())


def detect_layout(columns: Sequence[str]) -> str:
    present = set(columns)
    if "amount_value" in present and "line_item" in present:
        return LAYOUT_OPENAI
    if "usage_date_utc" in present and "cost_usd" in present:
        return LAYOUT_ANTHROPIC
    return LAYOUT_GENERIC


# --- parsing helpers -------------------------------------------------------------------


_Row = tuple[int, dict[str, str]]


def _records(reader: Any, columns: list[str], name: str) -> list[_Row]:
    rows: list[_Row] = []
    try:
        for cells in reader:
            line = reader.line_num
            if not cells or all(not cell.strip() for cell in cells):
                continue
            if len(cells) != len(columns):
                raise InvoiceFormatError(
                    f"{name} line {line}: expected {len(columns)} fields, found {len(cells)}"
                )
            rows.append(
                (line, {col: cell.strip() for col, cell in zip(columns, cells, strict=True)})
            )
            if len(rows) > INVOICE_ROWS_MAX:
                raise InvoiceFormatError(
                    f"{name}: more than {INVOICE_ROWS_MAX} rows; is this really an invoice?"
                )
    except csv.Error as error:
        raise InvoiceFormatError(
            f"{name} line {reader.line_num}: malformed CSV: {error}"
        ) from error
    return rows


def _require(columns: Sequence[str], required: Sequence[str], name: str, layout: str) -> None:
    missing = [column for column in required if column not in columns]
    if missing:
        raise InvoiceFormatError(
            f"{name}: invoice ({layout} layout) is missing required column(s): {', '.join(missing)}",
            missing_columns=tuple(missing),
        )


def _preview(value: str) -> str:
    return repr(value[:CELL_PREVIEW_CHARS])


def parse_cost(value: str, *, name: str, line: int, column: str) -> Decimal:
    """Exact decimal parse of an invoice amount; no symbols, separators or exponents."""
    text = value.strip()
    if not text or any(ch not in "0123456789.-+" for ch in text):
        raise InvoiceFormatError(
            f"{name} line {line}: {column} must be a plain decimal number, got {_preview(value)}"
        )
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise InvoiceFormatError(
            f"{name} line {line}: {column} must be a plain decimal number, got {_preview(value)}"
        ) from None
    # Providers write up to 17 decimals (OpenAI); the ledger keeps nano-units, so round the
    # invoice to the same quantum, half-even like the ledger itself.
    return amount.quantize(INTERNAL_QUANTUM, rounding=ROUND_HALF_EVEN)


def _parse_tokens(value: str, *, name: str, line: int, column: str) -> int | None:
    if not value:
        return None
    if not value.isdigit():
        raise InvoiceFormatError(
            f"{name} line {line}: {column} must be a non-negative integer, got {_preview(value)}"
        )
    return int(value)


def _parse_day(value: str, *, name: str, line: int, column: str) -> date:
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise InvoiceFormatError(
            f"{name} line {line}: {column} must be a date YYYY-MM-DD, got {_preview(value)}"
        ) from None


def _parse_currency(value: str, *, name: str, line: int, column: str) -> str:
    code = value.strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise InvoiceFormatError(
            f"{name} line {line}: {column} must be a 3-letter currency code, got {_preview(value)}"
        )
    return code


def _parse_instant(value: str, *, name: str, line: int, column: str) -> datetime:
    text = value.strip()
    try:
        if text.isdigit():
            return datetime.fromtimestamp(int(text), tz=UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        raise InvoiceFormatError(
            f"{name} line {line}: {column} must be an ISO 8601 instant or Unix seconds, got {_preview(value)}"
        ) from None
    if moment.tzinfo is None:
        # OpenAI's exports are in UTC; a naive timestamp there means UTC.
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


_Record = dict[str, Any]


def _parse_generic(rows: list[_Row], columns: list[str], name: str) -> list[_Record]:
    _require(columns, ("model", "cost", "currency"), name, LAYOUT_GENERIC)
    records: list[_Record] = []
    for line, row in rows:
        model = row["model"]
        if not model:
            raise InvoiceFormatError(f"{name} line {line}: model is empty")
        day_text = row.get("date", "")
        records.append(
            {
                "date": _parse_day(day_text, name=name, line=line, column="date")
                if day_text
                else None,
                "provider": row.get("provider") or None,
                "model": model,
                "input_tokens": _parse_tokens(
                    row.get("input_tokens", ""), name=name, line=line, column="input_tokens"
                ),
                "output_tokens": _parse_tokens(
                    row.get("output_tokens", ""), name=name, line=line, column="output_tokens"
                ),
                "cost": parse_cost(row["cost"], name=name, line=line, column="cost"),
                "currency": _parse_currency(
                    row["currency"], name=name, line=line, column="currency"
                ),
            }
        )
    return records


def _openai_bucket_day(start: datetime, end: datetime, *, name: str, line: int) -> date | None:
    """A 1-day bucket → its day; a whole calendar month → None (per-month line)."""
    if end - start == timedelta(days=1) and start.time() == datetime.min.time():
        return start.date()
    next_month = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    if start.day == 1 and start.time() == datetime.min.time() and end == next_month:
        return None
    raise InvoiceFormatError(
        f"{name} line {line}: cost bucket {start.isoformat()}..{end.isoformat()} is neither one "
        "UTC day nor one calendar month; export with 1-day buckets"
    )


def _parse_openai(rows: list[_Row], columns: list[str], name: str) -> list[_Record]:
    start_column = "start_time_iso" if "start_time_iso" in columns else "start_time"
    end_column = "end_time_iso" if "end_time_iso" in columns else "end_time"
    _require(
        columns,
        (start_column, end_column, "amount_value", "amount_currency", "line_item"),
        name,
        LAYOUT_OPENAI,
    )
    records: list[_Record] = []
    for line, row in rows:
        amount_text = row["amount_value"]
        if not amount_text:
            # The dashboard writes empty buckets (days without spend) with no amount.
            continue
        line_item = row["line_item"]
        if not line_item:
            raise InvoiceFormatError(
                f"{name} line {line}: line_item is empty; export the costs grouped by line item"
            )
        start = _parse_instant(row[start_column], name=name, line=line, column=start_column)
        end = _parse_instant(row[end_column], name=name, line=line, column=end_column)
        records.append(
            {
                "date": _openai_bucket_day(start, end, name=name, line=line),
                "provider": "openai",
                "model": line_item.split(",", 1)[0].strip(),
                "input_tokens": None,
                "output_tokens": None,
                "cost": parse_cost(amount_text, name=name, line=line, column="amount_value"),
                "currency": _parse_currency(
                    row["amount_currency"], name=name, line=line, column="amount_currency"
                ),
            }
        )
    return records


_ANTHROPIC_NO_MODEL = {"", "--", "null", "none"}


def _parse_anthropic(rows: list[_Row], columns: list[str], name: str) -> list[_Record]:
    _require(columns, ("usage_date_utc", "model", "cost_usd"), name, LAYOUT_ANTHROPIC)
    records: list[_Record] = []
    for line, row in rows:
        model = row["model"]
        if model.lower() in _ANTHROPIC_NO_MODEL:
            kind = row.get("cost_type") or row.get("usage_type") or "unattributed"
            model = f"({kind})"
        records.append(
            {
                "date": _parse_day(
                    row["usage_date_utc"], name=name, line=line, column="usage_date_utc"
                ),
                "provider": "anthropic",
                "model": model,
                "input_tokens": None,
                "output_tokens": None,
                "cost": parse_cost(row["cost_usd"], name=name, line=line, column="cost_usd"),
                "currency": "USD",
            }
        )
    return records


_PARSERS: Mapping[str, Callable[[list[_Row], list[str], str], list[_Record]]] = {
    LAYOUT_GENERIC: _parse_generic,
    LAYOUT_OPENAI: _parse_openai,
    LAYOUT_ANTHROPIC: _parse_anthropic,
}


def _finish(records: list[_Record], layout: str, name: str, rows_read: int, sha256: str) -> Invoice:
    if not records:
        raise InvoiceFormatError(f"{name}: invoice has no cost lines")
    dated = sum(1 for record in records if record["date"] is not None)
    if 0 < dated < len(records):
        raise InvoiceFormatError(
            f"{name}: {dated} of {len(records)} lines have a date; an invoice must be entirely "
            "per-day or entirely per-month"
        )
    currencies = sorted({record["currency"] for record in records})
    if len(currencies) != 1:
        raise InvoiceFormatError(
            f"{name}: invoice mixes currencies ({', '.join(currencies)}); split it per currency"
        )
    frame = pl.DataFrame(
        {column: [record[column] for record in records] for column in INVOICE_SCHEMA.names()},
        schema=INVOICE_SCHEMA,
    )
    return Invoice(
        frame=frame,
        layout=layout,
        currency=currencies[0],
        per_day=dated > 0,
        source_name=name,
        rows_read=rows_read,
        sha256=sha256,
    )
