"""Effective-dated prices and FX rates, and the cost arithmetic that uses them.

A price or rate is never edited: a new one with a later `effective_from` supersedes it.
Each has an explicit id, recorded by every charge that used it (pricing provenance).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from eventsourcing.domain import Aggregate, event

from domain.errors import FxRateNotFound, InvalidCommand, PriceNotFound
from domain.money import check_currency, quantize_internal, token_cost

PRICE_PER_MTOK_MAX = Decimal(100_000)
FX_RATE_MAX = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Price:
    price_id: str
    model: str
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    currency: str
    effective_from: datetime
    cached_input_per_mtok: Decimal | None = None


@dataclass(frozen=True, slots=True)
class FxRate:
    rate_id: str | None
    base: str
    quote: str
    rate: Decimal  # 1 base = rate quote
    effective_from: datetime | None
    inverted: bool = False


def _latest_at(entries: list, at: datetime):  # type: ignore[no-untyped-def]
    chosen = None
    for entry in entries:  # entries are in recording order; the later of equal instants wins
        if entry.effective_from <= at and (
            chosen is None or entry.effective_from >= chosen.effective_from
        ):
            chosen = entry
    return chosen


class PriceBook(Aggregate):
    """All prices ever set for one model."""

    class Opened(Aggregate.Created):
        model: str

    class PriceSet(Aggregate.Event):
        price_id: str
        input_per_mtok: Decimal
        output_per_mtok: Decimal
        cached_input_per_mtok: Decimal | None
        currency: str
        effective_from: datetime
        source: str

    @classmethod
    def open(cls, *, book_id: uuid.UUID, model: str) -> PriceBook:
        clean = model.strip()
        if not clean or len(clean) > 200:
            raise InvalidCommand("a model name must have 1 to 200 characters")
        return cls._create(cls.Opened, id=book_id, model=clean)

    def __init__(self, model: str) -> None:
        self.model = model
        self.prices: list[Price] = []

    def set_price(
        self,
        *,
        input_per_mtok: Decimal,
        output_per_mtok: Decimal,
        currency: str,
        effective_from: datetime,
        cached_input_per_mtok: Decimal | None = None,
        source: str = "admin",
    ) -> str:
        for value in (input_per_mtok, output_per_mtok, cached_input_per_mtok):
            if value is not None and (value < 0 or value > PRICE_PER_MTOK_MAX):
                raise InvalidCommand(
                    f"a price per million tokens must be between 0 and {PRICE_PER_MTOK_MAX}"
                )
        if effective_from.tzinfo is None:
            raise InvalidCommand("effective_from must carry a timezone")
        price_id = str(uuid.uuid4())
        self._price_set(
            price_id,
            input_per_mtok,
            output_per_mtok,
            cached_input_per_mtok,
            check_currency(currency),
            effective_from,
            source[:50],
        )
        return price_id

    @event(PriceSet)
    def _price_set(
        self,
        price_id: str,
        input_per_mtok: Decimal,
        output_per_mtok: Decimal,
        cached_input_per_mtok: Decimal | None,
        currency: str,
        effective_from: datetime,
        source: str,
    ) -> None:
        self.prices.append(
            Price(
                price_id,
                self.model,
                input_per_mtok,
                output_per_mtok,
                currency,
                effective_from,
                cached_input_per_mtok,
            )
        )

    def price_at(self, at: datetime) -> Price:
        chosen = _latest_at(self.prices, at)
        if chosen is None:
            raise PriceNotFound(
                f"no price in effect for model {self.model!r} at {at.isoformat()}", model=self.model
            )
        return chosen


class FxBook(Aggregate):
    """All rates ever set for one currency pair (1 base = rate quote)."""

    class Opened(Aggregate.Created):
        base: str
        quote: str

    class RateSet(Aggregate.Event):
        rate_id: str
        rate: Decimal
        effective_from: datetime
        source: str

    @classmethod
    def open(cls, *, book_id: uuid.UUID, base: str, quote: str) -> FxBook:
        base, quote = check_currency(base), check_currency(quote)
        if base == quote:
            raise InvalidCommand("an FX pair needs two different currencies")
        return cls._create(cls.Opened, id=book_id, base=base, quote=quote)

    def __init__(self, base: str, quote: str) -> None:
        self.base = base
        self.quote = quote
        self.rates: list[FxRate] = []

    def set_rate(self, *, rate: Decimal, effective_from: datetime, source: str = "admin") -> str:
        if rate <= 0 or rate > FX_RATE_MAX:
            raise InvalidCommand("an FX rate must be positive and sane")
        if effective_from.tzinfo is None:
            raise InvalidCommand("effective_from must carry a timezone")
        rate_id = str(uuid.uuid4())
        self._rate_set(rate_id, rate, effective_from, source[:50])
        return rate_id

    @event(RateSet)
    def _rate_set(self, rate_id: str, rate: Decimal, effective_from: datetime, source: str) -> None:
        self.rates.append(FxRate(rate_id, self.base, self.quote, rate, effective_from))

    def rate_at(self, at: datetime) -> FxRate:
        chosen = _latest_at(self.rates, at)
        if chosen is None:
            raise FxRateNotFound(f"no {self.base}/{self.quote} rate in effect at {at.isoformat()}")
        return chosen


def identity_rate(currency: str) -> FxRate:
    return FxRate(rate_id=None, base=currency, quote=currency, rate=Decimal(1), effective_from=None)


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    provider_cost: Decimal  # in the price currency
    converted_cost: Decimal  # in the account currency, before fee
    fee_amount: Decimal
    total: Decimal  # converted_cost + fee_amount, what the balance is debited


def compute_cost(
    *,
    price: Price,
    fx: FxRate,
    fee_rate: Decimal,
    input_tokens: int,
    output_tokens: int,
    cached_tokens: int = 0,
) -> CostBreakdown:
    """Provider cost in its own currency, converted at `fx`, plus the platform fee.
    Kept at internal precision (1e-9, half-even); nothing is rounded for display here."""
    cached = min(max(cached_tokens, 0), input_tokens)
    if price.cached_input_per_mtok is not None and cached:
        uncached_cost = token_cost(input_tokens - cached, price.input_per_mtok)
        cached_cost = token_cost(cached, price.cached_input_per_mtok)
        input_cost = uncached_cost + cached_cost
    else:
        input_cost = token_cost(input_tokens, price.input_per_mtok)
    provider_cost = quantize_internal(input_cost + token_cost(output_tokens, price.output_per_mtok))
    converted = quantize_internal(provider_cost * fx.rate)
    fee = quantize_internal(converted * fee_rate)
    return CostBreakdown(provider_cost, converted, fee, converted + fee)
