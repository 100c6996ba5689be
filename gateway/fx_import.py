"""`ledgergate fx import FILE`: the ECB euro foreign exchange reference rates, as published.

The ECB publishes two CSV files (https://www.ecb.europa.eu/stats/eurofxref/):

- `eurofxref.csv` (in eurofxref.zip), one day: a header `Date, USD, JPY, …, ZAR, ` and one
  row `27 November 2026, 1.0552, 161.39, …, `: ", " separated, the date spelled out, and a
  trailing empty column after the last comma.
- `eurofxref-hist.csv` (in eurofxref-hist.zip), every day since 1999: header
  `Date,USD,JPY,BGN,CYP,…,` and rows `2026-11-27,1.0552,…,N/A,…,` newest first: ","
  separated, ISO dates, `N/A` where a currency had no rate that day, the same trailing column.

Each rate is "1 EUR = rate X". Ledgergate records, per day, the pairs its currencies need:
EUR→USD and EUR→SEK as published, and USD→SEK crossed through the euro (SEK rate ÷ USD rate,
as the ECB itself describes cross rates), each an FX event whose `source` is the file's date
(`ecb:2026-11-27`, `ecb-cross:2026-11-27`) — the provenance of every charge that uses it.
A rate takes effect at 16:00 Europe/Frankfurt on its date (the ECB publishes around then);
re-importing a file records nothing new.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from domain.errors import InvalidCommand
from domain.money import SUPPORTED_CURRENCIES

ECB_BASE = "EUR"
ECB_PUBLISHED_AT = time(16, 0)
ECB_ZONE = ZoneInfo("Europe/Berlin")  # Frankfurt
CROSS_QUANTUM = Decimal("0.0000000001")  # 1e-10: finer than the ECB's 5 significant digits
FILE_BYTES_MAX = 20_000_000  # the full history is ~1.5 MB
SOURCE_PREFIX = "ecb:"
CROSS_SOURCE_PREFIX = "ecb-cross:"


@dataclass(frozen=True, slots=True)
class EcbDay:
    day: date
    rates: dict[str, Decimal]  # currency -> units per 1 EUR


def _parse_day(text: str) -> date:
    text = text.strip()
    for layout in ("%Y-%m-%d", "%d %B %Y"):
        try:
            return datetime.strptime(text, layout).date()
        except ValueError:
            continue
    raise InvalidCommand(f"not an ECB date: {text[:40]!r}", param="file")


def parse_ecb_csv(content: bytes | str) -> list[EcbDay]:
    """Both ECB layouts; returns the days in the file, oldest first."""
    if isinstance(content, bytes):
        if len(content) > FILE_BYTES_MAX:
            raise InvalidCommand("the file is larger than any ECB rate file", param="file")
        content = content.decode("utf-8-sig")
    rows = [row for row in csv.reader(io.StringIO(content), skipinitialspace=True) if row]
    if not rows or rows[0][0].strip().lower() != "date":
        raise InvalidCommand(
            "not an ECB reference-rate CSV: the first column must be 'Date' "
            "(eurofxref.csv or eurofxref-hist.csv)",
            param="file",
        )
    header = [name.strip().upper() for name in rows[0]]
    days: list[EcbDay] = []
    for line, row in enumerate(rows[1:], start=2):
        rates: dict[str, Decimal] = {}
        for currency, raw in zip(header[1:], row[1:], strict=False):
            value = raw.strip()
            if not currency or not value or value.upper() == "N/A":
                continue  # the trailing empty column, or no rate that day
            try:
                rate = Decimal(value)
            except InvalidOperation:
                raise InvalidCommand(
                    f"line {line}: {currency} rate {value[:20]!r} is not a number", param="file"
                ) from None
            if rate <= 0:
                raise InvalidCommand(f"line {line}: {currency} rate must be positive", param="file")
            rates[currency] = rate
        days.append(EcbDay(_parse_day(row[0]), rates))
    days.sort(key=lambda day: day.day)
    return days


def effective_instant(day: date) -> datetime:
    return datetime.combine(day, ECB_PUBLISHED_AT, tzinfo=ECB_ZONE).astimezone(ZoneInfo("UTC"))


def fx_rows(
    days: list[EcbDay], since: date | None = None
) -> list[tuple[str, str, Decimal, datetime, str]]:
    """(base, quote, rate, effective_from, source) rows for every pair of supported
    currencies the file can give: EUR→X as published, X→Y crossed through EUR."""
    rows: list[tuple[str, str, Decimal, datetime, str]] = []
    others = sorted(SUPPORTED_CURRENCIES - {ECB_BASE})
    for day in days:
        if since is not None and day.day < since:
            continue
        at = effective_instant(day.day)
        for quote in others:
            if quote in day.rates:
                rows.append(
                    (ECB_BASE, quote, day.rates[quote], at, f"{SOURCE_PREFIX}{day.day.isoformat()}")
                )
        for index, base in enumerate(others):
            for quote in others[index + 1 :]:
                if base in day.rates and quote in day.rates:
                    cross = (day.rates[quote] / day.rates[base]).quantize(CROSS_QUANTUM)
                    rows.append(
                        (base, quote, cross, at, f"{CROSS_SOURCE_PREFIX}{day.day.isoformat()}")
                    )
    return rows
