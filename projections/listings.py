"""Listings of the pricing history for the CLI (`ledgergate price list`, `fx list`).

Without `at`: every recorded row (the whole effective-dated history), oldest first per
model or pair. With `at`: the one row in effect at that instant per model or pair, chosen as
the domain chooses (the latest effective_from <= at; of equal instants the later recording).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from projections.db import ReadStore
from projections.ledger_queries import _fx_record, _instant, _position, _price_record


def list_prices(
    store: ReadStore, *, model: str | None = None, at: datetime | None = None
) -> dict[str, Any]:
    rows, position = _rows(store, "price", at, ("model", model))
    records = [_price_record(row) for row in _in_effect(rows, at, ("model",))]
    return {"object": "list", "data": records, "as_of_position": position}


def list_fx_rates(store: ReadStore, *, at: datetime | None = None) -> dict[str, Any]:
    rows, position = _rows(store, "fx", at, None)
    records = [_fx_record(row, inverted=False) for row in _in_effect(rows, at, ("base", "quote"))]
    return {"object": "list", "data": records, "as_of_position": position}


def _rows(
    store: ReadStore, kind: str, at: datetime | None, equal: tuple[str, str | None] | None
) -> tuple[list[dict[str, Any]], int]:
    where = ["kind = %s"]
    params: list[Any] = [kind]
    if equal is not None and equal[1] is not None:
        where.append(f"{equal[0]} = %s")
        params.append(equal[1])
    if at is not None:
        where.append("effective_from <= %s")
        params.append(_instant(store, at))
    order = "model" if kind == "price" else "base, quote"
    with store.transaction(write=False) as tx:
        position = _position(tx, "pricing_history")
        rows = tx.execute(
            f"SELECT * FROM lg_pricing_history WHERE {' AND '.join(where)} "  # noqa: S608
            f"ORDER BY {order}, effective_from, position",
            tuple(params),
        ).fetchall()
    return rows, position


def _in_effect(
    rows: list[dict[str, Any]], at: datetime | None, key: tuple[str, ...]
) -> list[dict[str, Any]]:
    if at is None:
        return rows
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:  # ordered by effective_from, then position: the last one wins
        latest[tuple(row[k] for k in key)] = row
    return list(latest.values())
