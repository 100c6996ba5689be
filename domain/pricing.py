"""Effective-dated prices and FX rates, and the one answer to "which price and FX rate were
in effect at instant T" (`price_in_effect`, `fx_in_effect`), with the ids of the events that
set them. The ledger (domain/handlers), the projections' ledger queries and the OCR catalog
price all ask here; the cost arithmetic that uses them is domain/settlement.py.

A price or rate is never edited: a new one with a later `effective_from` supersedes it.
Each has an explicit id, recorded by every charge that used it (pricing provenance).

Which price wins (the one rule; projections/ledger_queries.pricing_at mirrors it): every
price has a source, `catalog` (seeded from the shipped catalog at start) or `operator`
(set by an operator, or given with a project's custom model). The latest OPERATOR price in
effect wins; only when no operator price is in effect does the latest catalog price apply.
So a catalog seed never supersedes an operator's price, whatever their effective dates.

Price identity: shipped models have one book each (`price_book_id(model)`); a project's
custom model has a book of its own per project (`price_book_id(model, project_id)`), so two
projects' models of the same name never share, see or charge each other's prices.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol, TypeVar

from eventsourcing.domain import Aggregate

from domain.errors import FxRateNotFound, InvalidCommand, PriceNotFound
from domain.ids import fx_book_id, price_book_id
from domain.money import check_currency

PRICE_PER_MTOK_MAX = Decimal(100_000)
FX_INVERSE_QUANTUM = Decimal("0.000000000001")  # an inverted FX rate carries 12 places
FX_RATE_MAX = Decimal(1_000_000)
PRICE_SOURCE_CATALOG = "catalog"
PRICE_SOURCE_OPERATOR = "operator"
PRICE_SOURCES = (PRICE_SOURCE_CATALOG, PRICE_SOURCE_OPERATOR)
LEGACY_CUSTOM_SOURCE_PREFIX = "custom:"  # custom-model prices recorded before per-project books


def price_source_kind(source: str) -> str:
    """`catalog` or `operator` for any recorded source (older events say "admin" or
    "custom:<project>": both were set by an operator)."""
    return PRICE_SOURCE_CATALOG if source == PRICE_SOURCE_CATALOG else PRICE_SOURCE_OPERATOR


def catalog_price_id(model: str, effective_from: datetime) -> str:
    """Deterministic id of a catalog-seeded price: every process seeding the same catalog
    row names it the same, so a second seeding is recognisably the same price."""
    return str(uuid.uuid5(_PRICE_NAMESPACE, f"catalog:{model}:{effective_from.isoformat()}"))


_PRICE_NAMESPACE = uuid.UUID("0c7b8a52-33a4-4a4e-bb0e-4f3c3b1f5e21")


@dataclass(frozen=True, slots=True)
class Price:
    price_id: str
    model: str
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    currency: str
    effective_from: datetime
    cached_input_per_mtok: Decimal | None = None
    source: str = PRICE_SOURCE_OPERATOR  # as recorded; price_source_kind() says which kind


@dataclass(frozen=True, slots=True)
class FxRate:
    rate_id: str | None
    base: str
    quote: str
    rate: Decimal  # 1 base = rate quote
    effective_from: datetime | None
    inverted: bool = False


class Dated(Protocol):
    @property
    def effective_from(self) -> datetime | None: ...


class DatedWithSource(Dated, Protocol):
    @property
    def source(self) -> str: ...


DatedT = TypeVar("DatedT", bound=Dated)
SourcedT = TypeVar("SourcedT", bound=DatedWithSource)


def rate_chosen(rates: Iterable[DatedT], at: datetime) -> DatedT | None:
    """The entry in effect at `at` among `rates` (in recording order): the latest
    `effective_from` not after `at`; of equal instants, the later recorded wins."""
    chosen: DatedT | None = None
    for entry in rates:
        effective_from = entry.effective_from
        if effective_from is None or effective_from > at:
            continue
        chosen_from = None if chosen is None else chosen.effective_from
        if chosen_from is None or effective_from >= chosen_from:
            chosen = entry
    return chosen


def price_chosen(prices: Iterable[SourcedT], at: datetime) -> SourcedT | None:
    """The price in effect at `at` among `prices` (in recording order): the latest
    operator price in effect, else the latest catalog price (the module's one rule). The
    ledger (PriceBook.price_at) and the read side (projections/ledger_queries.pricing_at)
    both choose with this."""
    listed = list(prices)
    operator = [p for p in listed if price_source_kind(p.source) == PRICE_SOURCE_OPERATOR]
    chosen = rate_chosen(operator, at)
    if chosen is None:
        chosen = rate_chosen([p for p in listed if p.source == PRICE_SOURCE_CATALOG], at)
    return chosen


def inverse_rate(rate: Decimal) -> Decimal:
    """1 / rate at the precision every inverted FX rate carries (12 places)."""
    return (Decimal(1) / rate).quantize(FX_INVERSE_QUANTUM)


class PriceBook(Aggregate):
    """All prices ever set for one model (of one project, for a custom model)."""

    class Opened(Aggregate.Created):
        """v2 adds `project_id`: the project owning a custom model's book (None: shipped)."""

        class_version = 2
        model: str
        project_id: str | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, object]) -> None:
            state["project_id"] = None  # v1 books were all global

    class PriceSet(Aggregate.Event):
        price_id: str
        input_per_mtok: Decimal
        output_per_mtok: Decimal
        cached_input_per_mtok: Decimal | None
        currency: str
        effective_from: datetime
        source: str

        def apply(self, aggregate: PriceBook) -> None:
            aggregate.prices.append(
                Price(
                    price_id=self.price_id,
                    model=aggregate.model,
                    input_per_mtok=self.input_per_mtok,
                    output_per_mtok=self.output_per_mtok,
                    currency=self.currency,
                    effective_from=self.effective_from,
                    cached_input_per_mtok=self.cached_input_per_mtok,
                    source=self.source,
                )
            )

    @classmethod
    def open(cls, *, book_id: uuid.UUID, model: str, project_id: str | None = None) -> PriceBook:
        clean = model.strip()
        if not clean or len(clean) > 200:
            raise InvalidCommand("a model name must have 1 to 200 characters")
        return cls._create(cls.Opened, id=book_id, model=clean, project_id=project_id)

    def __init__(self, model: str, project_id: str | None = None) -> None:
        self.model = model
        self.project_id = project_id
        self.prices: list[Price] = []

    def catalog_price_recorded(self, effective_from: datetime) -> Price | None:
        for price in self.prices:
            if price.source == PRICE_SOURCE_CATALOG and price.effective_from == effective_from:
                return price
        return None

    def set_price(
        self,
        *,
        input_per_mtok: Decimal,
        output_per_mtok: Decimal,
        currency: str,
        effective_from: datetime,
        cached_input_per_mtok: Decimal | None = None,
        source: str = PRICE_SOURCE_OPERATOR,
    ) -> str:
        """Record a price; returns its id. A catalog row already recorded (same
        effective_from) is not recorded again: seeding is idempotent, also when two processes
        seed at once (the loser of the race retries on fresh state and lands here)."""
        if source not in PRICE_SOURCES:
            raise InvalidCommand(f"a price source is one of {', '.join(PRICE_SOURCES)}")
        for value in (input_per_mtok, output_per_mtok, cached_input_per_mtok):
            if value is not None and (value < 0 or value > PRICE_PER_MTOK_MAX):
                raise InvalidCommand(
                    f"a price per million tokens must be between 0 and {PRICE_PER_MTOK_MAX}"
                )
        if effective_from.tzinfo is None:
            raise InvalidCommand("effective_from must carry a timezone")
        if source == PRICE_SOURCE_CATALOG:
            recorded = self.catalog_price_recorded(effective_from)
            if recorded is not None:
                return recorded.price_id
            price_id = catalog_price_id(self.model, effective_from)
        else:
            price_id = str(uuid.uuid4())
        self.trigger_event(
            self.PriceSet,
            price_id=price_id,
            input_per_mtok=input_per_mtok,
            output_per_mtok=output_per_mtok,
            cached_input_per_mtok=cached_input_per_mtok,
            currency=check_currency(currency),
            effective_from=effective_from,
            source=source,
        )
        return price_id

    def price_at(self, at: datetime, *, legacy_source: str | None = None) -> Price:
        """The price in effect at `at`: the latest operator price in effect, else the latest
        catalog price (module docstring). `legacy_source` keeps to prices recorded with that
        exact source (a project's custom-model prices in a pre-v2 shared book)."""
        prices = self.prices
        if legacy_source is not None:
            prices = [p for p in prices if p.source == legacy_source]
        chosen = price_chosen(prices, at)
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

        def apply(self, aggregate: FxBook) -> None:
            aggregate.rates.append(
                FxRate(
                    self.rate_id, aggregate.base, aggregate.quote, self.rate, self.effective_from
                )
            )
            aggregate._sources()[self.rate_id] = self.source

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
        """Record a rate; returns its id. The same rate from the same source at the same
        instant is already recorded: that id is returned and nothing is recorded again (a
        re-imported ECB file adds nothing)."""
        if rate <= 0 or rate > FX_RATE_MAX:
            raise InvalidCommand("an FX rate must be positive and sane")
        if effective_from.tzinfo is None:
            raise InvalidCommand("effective_from must carry a timezone")
        source = source[:50]
        for recorded in self.rates:
            if (
                recorded.effective_from,
                recorded.rate,
                self._sources().get(str(recorded.rate_id)),
            ) == (
                effective_from,
                rate,
                source,
            ):
                return str(recorded.rate_id)
        rate_id = str(uuid.uuid4())
        self.trigger_event(
            self.RateSet, rate_id=rate_id, rate=rate, effective_from=effective_from, source=source
        )
        return rate_id

    def _sources(self) -> dict[str, str]:
        # rate id -> source; setdefault: state restored from before this existed lacks it.
        return self.__dict__.setdefault("rate_sources", {})  # type: ignore[no-any-return]

    def rate_at(self, at: datetime) -> FxRate:
        chosen = rate_chosen(self.rates, at)
        if chosen is None:
            raise FxRateNotFound(f"no {self.base}/{self.quote} rate in effect at {at.isoformat()}")
        return chosen


def identity_rate(currency: str) -> FxRate:
    return FxRate(rate_id=None, base=currency, quote=currency, rate=Decimal(1), effective_from=None)


Find = Callable[[uuid.UUID], object]  # an aggregate by id, or None (UnitOfWork.find)


# --- the book a price or rate is recorded in --------------------------------------------------
# Each returns (book, new): a new book is the caller's to add to its unit of work, once the
# command is decided, so a refused price or rate leaves no empty book behind.


def price_book_for(
    find: Find, model: str, project_id: uuid.UUID | None = None
) -> tuple[PriceBook, bool]:
    """The book of `model` (of `project_id`'s custom model, module docstring), or a new one."""
    book_id = price_book_id(model, project_id)
    book = find(book_id)
    if isinstance(book, PriceBook):
        return book, False
    owner = None if project_id is None else str(project_id)
    return PriceBook.open(book_id=book_id, model=model, project_id=owner), True


def fx_book_for(find: Find, base: str, quote: str) -> tuple[FxBook, bool]:
    """The book of the pair base/quote (1 base = rate quote), or a new one."""
    book_id = fx_book_id(base.upper(), quote.upper())
    book = find(book_id)
    if isinstance(book, FxBook):
        return book, False
    return FxBook.open(book_id=book_id, base=base, quote=quote), True


# --- the price and FX rate in effect at an instant, read from the books ---------------------


def price_in_effect(
    find: Find, model: str, at: datetime, project_id: uuid.UUID | None = None
) -> Price:
    """The price of `model` in effect at `at`, with its id (`price_id`, the PriceSet that
    set it). With `project_id`, of that project's custom model, from its own book only
    (custom-model prices recorded before per-project books, in the shared book with source
    "custom:<project>", still count for that project and no other)."""
    if project_id is not None:
        own = find(price_book_id(model, project_id))
        if isinstance(own, PriceBook):
            return own.price_at(at)
        legacy = find(price_book_id(model))
        if isinstance(legacy, PriceBook):
            return legacy.price_at(at, legacy_source=f"{LEGACY_CUSTOM_SOURCE_PREFIX}{project_id}")
        raise PriceNotFound(f"no price has been set for model {model!r}", model=model)
    book = find(price_book_id(model))
    if not isinstance(book, PriceBook) or book.project_id is not None:
        raise PriceNotFound(f"no price has been set for model {model!r}", model=model)
    return book.price_at(at)


def _rate_in_effect(book: object, at: datetime) -> FxRate | None:
    if isinstance(book, FxBook) and any(
        r.effective_from is not None and r.effective_from <= at for r in book.rates
    ):
        return book.rate_at(at)
    return None


def fx_in_effect(find: Find, base: str, quote: str, at: datetime) -> FxRate:
    """The rate converting `base` into `quote` at `at`, with its id (`rate_id`, the RateSet
    that set it): the direct pair's rate, else the inverse pair's inverted (12 places), the
    identity for one currency."""
    if base == quote:
        return identity_rate(base)
    direct = _rate_in_effect(find(fx_book_id(base, quote)), at)
    if direct is not None:
        return direct
    inverse = _rate_in_effect(find(fx_book_id(quote, base)), at)
    if inverse is not None:
        return FxRate(
            rate_id=inverse.rate_id,
            base=base,
            quote=quote,
            rate=inverse_rate(inverse.rate),
            effective_from=inverse.effective_from,
            inverted=True,
        )
    raise FxRateNotFound(
        f"no {base}/{quote} FX rate in effect at {at.isoformat()}: this is a configuration "
        "gap, not an outage (retrying will not help). An operator loads the ECB reference "
        "rates with `ledgergate fx import eurofxref.csv`, or sets one with `ledgergate fx set "
        f"--base {base} --quote {quote} --rate R --effective-from T`",
        base=base,
        quote=quote,
    )
