"""Pricing history: every PriceSet and FX RateSet, each with the id of the event that set
it, so "which price and rate were in effect at T, and who set them" is a query."""

from __future__ import annotations

from typing import Any

from domain.ids import event_id
from domain.pricing import LEGACY_CUSTOM_SOURCE_PREFIX, FxBook, PriceBook
from projections.base import View
from projections.db import Tx, iso


def instant_value(tx: Tx, moment: Any) -> Any:
    return iso(moment) if tx.store.dialect == "sqlite" else moment


class PricingHistoryView(View):
    name = "pricing_history"
    tables = ("lg_pricing_history", "lg_pricing_books")
    event_types = (PriceBook.Opened, PriceBook.PriceSet, FxBook.Opened, FxBook.RateSet)

    def apply(self, tx: Tx, event: Any, position: int) -> None:
        book_id = str(event.originator_id)
        if isinstance(event, PriceBook.Opened):
            tx.execute(
                "INSERT INTO lg_pricing_books (book_id, kind, model, project_id) "
                "VALUES (%s, 'price', %s, %s) ON CONFLICT (book_id) DO NOTHING",
                (book_id, event.model, event.project_id),
            )
            return
        if isinstance(event, FxBook.Opened):
            tx.execute(
                "INSERT INTO lg_pricing_books (book_id, kind, base, quote) VALUES (%s, 'fx', %s, %s) "
                "ON CONFLICT (book_id) DO NOTHING",
                (book_id, event.base, event.quote),
            )
            return
        book = tx.execute(
            "SELECT model, base, quote, project_id FROM lg_pricing_books WHERE book_id = %s",
            (book_id,),
        ).fetchone()
        if book is None:
            return
        the_event_id = event_id(event.originator_id, event.originator_version)
        recorded_at = instant_value(tx, event.timestamp)
        effective_from = instant_value(tx, event.effective_from)
        if isinstance(event, PriceBook.PriceSet):
            project_id = book["project_id"]
            if project_id is None and event.source.startswith(LEGACY_CUSTOM_SOURCE_PREFIX):
                # A custom model's price recorded before per-project books: whose it is.
                project_id = event.source[len(LEGACY_CUSTOM_SOURCE_PREFIX) :]
            tx.execute(
                "INSERT INTO lg_pricing_history (event_id, kind, entry_id, model, currency, input_per_mtok, "
                "output_per_mtok, cached_input_per_mtok, effective_from, recorded_at, source, position, "
                "project_id) VALUES (%s, 'price', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (event_id) DO NOTHING",
                (
                    the_event_id,
                    event.price_id,
                    book["model"],
                    event.currency,
                    event.input_per_mtok,
                    event.output_per_mtok,
                    event.cached_input_per_mtok,
                    effective_from,
                    recorded_at,
                    event.source,
                    position,
                    project_id,
                ),
            )
        elif isinstance(event, FxBook.RateSet):
            tx.execute(
                "INSERT INTO lg_pricing_history (event_id, kind, entry_id, base, quote, rate, effective_from, "
                "recorded_at, source, position) VALUES (%s, 'fx', %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (event_id) DO NOTHING",
                (
                    the_event_id,
                    event.rate_id,
                    book["base"],
                    book["quote"],
                    event.rate,
                    effective_from,
                    recorded_at,
                    event.source,
                    position,
                ),
            )
