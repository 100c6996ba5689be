"""Pricing history: every PriceSet and FX RateSet, each with the id of the event that set
it, so "which price and rate were in effect at T, and who set them" is a query."""

from __future__ import annotations

from typing import Any

from domain.ids import event_id
from domain.pricing import LEGACY_CUSTOM_SOURCE_PREFIX, FxBook, PriceBook
from projections.base import View, reads
from projections.db import Tx


class PricingHistoryView(View):
    name = "pricing_history"
    tables = ("lg_pricing_history", "lg_pricing_books")

    @reads(PriceBook.Opened)
    def _price_book_opened(self, tx: Tx, event: Any, position: int) -> None:
        tx.execute(
            "INSERT INTO lg_pricing_books (book_id, kind, model, project_id) "
            "VALUES (%s, 'price', %s, %s) ON CONFLICT (book_id) DO NOTHING",
            (str(event.originator_id), event.model, event.project_id),
        )

    @reads(FxBook.Opened)
    def _fx_book_opened(self, tx: Tx, event: Any, position: int) -> None:
        tx.execute(
            "INSERT INTO lg_pricing_books (book_id, kind, base, quote) VALUES (%s, 'fx', %s, %s) "
            "ON CONFLICT (book_id) DO NOTHING",
            (str(event.originator_id), event.base, event.quote),
        )

    @reads(PriceBook.PriceSet)
    def _price_set(self, tx: Tx, event: Any, position: int) -> None:
        book = _book(tx, event)
        if book is None:
            return
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
                event_id(event.originator_id, event.originator_version),
                event.price_id,
                book["model"],
                event.currency,
                event.input_per_mtok,
                event.output_per_mtok,
                event.cached_input_per_mtok,
                tx.instant(event.effective_from),
                tx.instant(event.timestamp),
                event.source,
                position,
                project_id,
            ),
        )

    @reads(FxBook.RateSet)
    def _rate_set(self, tx: Tx, event: Any, position: int) -> None:
        book = _book(tx, event)
        if book is None:
            return
        tx.execute(
            "INSERT INTO lg_pricing_history (event_id, kind, entry_id, base, quote, rate, effective_from, "
            "recorded_at, source, position) VALUES (%s, 'fx', %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (event_id) DO NOTHING",
            (
                event_id(event.originator_id, event.originator_version),
                event.rate_id,
                book["base"],
                book["quote"],
                event.rate,
                tx.instant(event.effective_from),
                tx.instant(event.timestamp),
                event.source,
                position,
            ),
        )


def _book(tx: Tx, event: Any) -> dict[str, Any] | None:
    return tx.execute(
        "SELECT model, base, quote, project_id FROM lg_pricing_books WHERE book_id = %s",
        (str(event.originator_id),),
    ).fetchone()
