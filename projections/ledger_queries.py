"""Reads over the usage and pricing-history views. Every answer reports the position of
the view it reflects (`as_of_position`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from domain.money import DISPLAY_QUANTUM
from domain.pricing import inverse_rate, price_chosen, rate_chosen
from projections.db import (
    ReadStore,
    Tx,
    as_datetime,
    as_decimal,
    fx_rate_text,
    money_text,
    price_text,
    time_text,
)

ZERO = Decimal(0)
USAGE_DIMENSIONS = {
    "day": "day",
    "model": "model",
    "provider": "provider",
    "key": "key_id",
    "actor": "actor_id",
    "key_source": "key_source",
}
USAGE_GROUP_DEFAULT = ("day", "model")
USAGE_DAYS_MAX = 366
USAGE_ROWS_MAX = 200_000


class UsageQueryError(ValueError):
    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def _position(tx: Tx, view: str) -> int:
    return tx.tracked_position(view)


def _day_text(value: Any) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def parse_group_by(raw: str | None) -> list[str]:
    if raw is None or not raw.strip():
        return list(USAGE_GROUP_DEFAULT)
    names = [part.strip() for part in raw.split(",") if part.strip()]
    unknown = [name for name in names if name not in USAGE_DIMENSIONS]
    if unknown or len(set(names)) != len(names):
        raise UsageQueryError(
            f"group_by takes distinct names from: {', '.join(USAGE_DIMENSIONS)}", "group_by"
        )
    return names


def rounded_for_display(amount: Decimal) -> str:
    # Display/invoice rounding: to cents, ROUND_HALF_UP (the README's rounding statement).
    return format(amount.quantize(DISPLAY_QUANTUM, rounding=ROUND_HALF_UP), "f")


def usage(
    store: ReadStore,
    *,
    project_id: str,
    group_by: Sequence[str],
    since: date,
    until: date,
) -> dict[str, Any]:
    """Usage of one project between two UTC days, both inclusive, grouped by `group_by`."""
    if until < since:
        raise UsageQueryError("until is before since", "until")
    if (until - since).days >= USAGE_DAYS_MAX:
        raise UsageQueryError(f"a usage range spans at most {USAGE_DAYS_MAX} days", "since")
    bounds = (store.day(since), store.day(until))
    with store.transaction(write=False) as tx:
        position = _position(tx, "usage")
        rows = tx.execute(
            "SELECT * FROM lg_usage WHERE project_id = %s AND day >= %s AND day <= %s "
            "ORDER BY day, model, provider, key_id, actor_id LIMIT %s",
            (project_id, *bounds, USAGE_ROWS_MAX + 1),
        ).fetchall()
        account = tx.execute(
            "SELECT currency FROM lg_usage_accounts WHERE project_id = %s", (project_id,)
        ).fetchone()
    if len(rows) > USAGE_ROWS_MAX:
        raise UsageQueryError("too many usage rows: narrow the date range", "since")
    groups: dict[tuple[str, ...], dict[str, Any]] = {}
    totals = _empty_bucket()
    for row in rows:
        values = {
            "day": _day_text(row["day"]),
            "model": row["model"],
            "provider": row["provider"],
            "key": row["key_id"] or None,
            "actor": row["actor_id"] or None,
            "key_source": row["key_source"],
        }
        group_key = tuple(str(values[name]) for name in group_by)
        bucket = groups.get(group_key)
        if bucket is None:
            bucket = groups[group_key] = {
                **{name: values[name] for name in group_by},
                **_empty_bucket(),
            }
        for target in (bucket, totals):
            _add(target, row)
    return {
        "object": "usage",
        "project_id": project_id,
        "currency": account["currency"] if account else None,
        "group_by": list(group_by),
        "since": since.isoformat(),
        "until": until.isoformat(),
        "data": [_render(bucket) for bucket in groups.values()],
        "totals": {
            **_render(totals),
            "cost_rounded": rounded_for_display(totals["cost"]),
            "rounding": "ROUND_HALF_UP to 0.01",
        },
        "as_of_position": position,
    }


def _empty_bucket() -> dict[str, Any]:
    return {
        "requests": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "cached_tokens": 0,
        "cost": ZERO,
        "fee_amount": ZERO,
        "shortfall_amount": ZERO,
        "provider_cost": {},
    }


def _add(bucket: dict[str, Any], row: dict[str, Any]) -> None:
    for name in ("requests", "input_tokens", "output_tokens", "cached_tokens"):
        bucket[name] += int(row[name])
    for name in ("cost", "fee_amount", "shortfall_amount"):
        bucket[name] += as_decimal(row[name]) or ZERO
    by_currency = bucket["provider_cost"]
    currency = row["provider_currency"]
    by_currency[currency] = by_currency.get(currency, ZERO) + (
        as_decimal(row["provider_cost"]) or ZERO
    )


def _render(bucket: dict[str, Any]) -> dict[str, Any]:
    rendered = dict(bucket)
    for name in ("cost", "fee_amount", "shortfall_amount"):
        rendered[name] = money_text(bucket[name])
    rendered["provider_cost"] = {k: money_text(v) for k, v in bucket["provider_cost"].items()}
    return rendered


# --- pricing ------------------------------------------------------------------------------


def _instant(store: ReadStore, moment: datetime) -> Any:
    return store.instant(moment)


def _price_record(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "price_id": row["entry_id"],
        "event_id": row["event_id"],
        "model": row["model"],
        "currency": row["currency"],
        "input_per_mtok": price_text(row["input_per_mtok"]),
        "output_per_mtok": price_text(row["output_per_mtok"]),
        "cached_input_per_mtok": price_text(row["cached_input_per_mtok"]),
        "effective_from": time_text(row["effective_from"]),
        "recorded_at": time_text(row["recorded_at"]),
        "source": row["source"],
        "position": int(row["position"]),
    }


def _fx_record(row: dict[str, Any], *, inverted: bool) -> dict[str, Any]:
    rate = as_decimal(row["rate"]) or ZERO
    return {
        "rate_id": row["entry_id"],
        "event_id": row["event_id"],
        # The pair the rate converts (1 base = rate quote), inverted from the stored pair
        # the same way the domain inverts it at admission.
        "base": row["quote"] if inverted else row["base"],
        "quote": row["base"] if inverted else row["quote"],
        "rate": fx_rate_text(inverse_rate(rate) if inverted else rate),
        "stored_rate": fx_rate_text(rate),
        "inverted": inverted,
        "effective_from": time_text(row["effective_from"]),
        "recorded_at": time_text(row["recorded_at"]),
        "source": row["source"],
        "position": int(row["position"]),
    }


@dataclass(frozen=True, slots=True)
class _Entry:
    """A pricing-history row as the domain's choice rule reads it."""

    effective_from: datetime | None
    source: str
    row: Any

    @classmethod
    def of(cls, row: Any) -> _Entry:
        return cls(as_datetime(row["effective_from"]), str(row["source"]), row)


def pricing_at(
    store: ReadStore,
    *,
    model: str,
    at: datetime,
    currency: str | None,
    project_id: str | None = None,
) -> dict[str, Any]:
    """Which price (and FX rate into `currency`) was in effect at `at`, and which events
    set them. The domain's own choice (domain/pricing.price_chosen / rate_chosen): the latest
    operator price in effect, else the latest catalog price; the later recording of equal
    instants wins; a direct FX pair before its inverse. With `project_id`: that project's custom model's
    prices only; without: shipped models' prices only (never any project's)."""
    moment = _instant(store, at)
    scope = "project_id = %s" if project_id is not None else "project_id IS NULL"
    scope_args: tuple[Any, ...] = (project_id,) if project_id is not None else ()
    with store.transaction(write=False) as tx:
        position = _position(tx, "pricing_history")
        # The rows in effect by date, in recording order; the domain's rule chooses among them.
        price_rows = tx.execute(
            f"SELECT * FROM lg_pricing_history WHERE kind = 'price' AND model = %s AND {scope} "  # noqa: S608 - constant fragments
            "AND effective_from <= %s ORDER BY position",
            (model, *scope_args, moment),
        ).fetchall()
        chosen = price_chosen((_Entry.of(row) for row in price_rows), at)
        price_row = None if chosen is None else chosen.row
        fx: dict[str, Any] | None = None
        if price_row is not None and currency and currency != price_row["currency"]:
            for base, quote, inverted in (
                (price_row["currency"], currency, False),
                (currency, price_row["currency"], True),
            ):
                rate_rows = tx.execute(
                    "SELECT * FROM lg_pricing_history WHERE kind = 'fx' AND base = %s AND quote = %s "
                    "AND effective_from <= %s ORDER BY position",
                    (base, quote, moment),
                ).fetchall()
                rate = rate_chosen((_Entry.of(row) for row in rate_rows), at)
                if rate is not None:
                    fx = _fx_record(rate.row, inverted=inverted)
                    break
    result: dict[str, Any] = {
        "object": "pricing",
        "model": model,
        "at": at.isoformat(),
        "currency": currency,
        "price": None if price_row is None else _price_record(price_row),
        "fx": fx,
        "as_of_position": position,
    }
    if price_row is not None and (not currency or currency == price_row["currency"]):
        result["fx"] = {
            "identity": True,
            "rate": fx_rate_text(1),
            "rate_id": None,
            "event_id": None,
        }
    return result


def pricing_events(
    store: ReadStore, *, price_id: str | None, fx_rate_id: str | None
) -> dict[str, str | None]:
    """The event ids that set a price id and an FX rate id (audit provenance)."""
    found: dict[str, str | None] = {"price_event_id": None, "fx_rate_event_id": None}
    with store.transaction(write=False) as tx:
        for name, entry_id, kind in (
            ("price_event_id", price_id, "price"),
            ("fx_rate_event_id", fx_rate_id, "fx"),
        ):
            if entry_id:
                row = tx.execute(
                    "SELECT event_id FROM lg_pricing_history WHERE kind = %s AND entry_id = %s",
                    (kind, entry_id),
                ).fetchone()
                found[name] = row["event_id"] if row else None
    return found
