"""Money and cost arithmetic: Decimal with a currency, nano-unit precision, no floats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import CurrencyMismatch, InvalidAmount, PriceNotFound
from domain.money import Money, to_decimal
from domain.pricing import FxRate, Price, PriceBook, identity_rate
from domain.settlement import compute_cost

NOW = datetime(2026, 11, 21, tzinfo=UTC)


def test_mixing_currencies_raises() -> None:
    with pytest.raises(CurrencyMismatch):
        Money(Decimal(1), "USD") + Money(Decimal(1), "EUR")


def test_floats_are_refused_as_amounts() -> None:
    with pytest.raises(InvalidAmount):
        to_decimal(0.1)
    assert to_decimal("0.1") == Decimal("0.1")


def test_unsupported_currencies_are_refused() -> None:
    with pytest.raises(InvalidAmount):
        Money(Decimal(1), "GBP")


def test_money_keeps_nano_unit_precision_and_rounds_only_on_request() -> None:
    money = Money(Decimal("0.0000000015"), "usd")
    assert money.amount == Decimal("0.000000002") and money.currency == "USD"
    assert Money(Decimal("1.005"), "EUR").rounded(rounding=ROUND_HALF_UP) == Decimal("1.01")


@given(
    input_tokens=st.integers(0, 2_000_000),
    output_tokens=st.integers(0, 2_000_000),
    price_in=st.decimals(min_value=0, max_value=100, places=4),
    price_out=st.decimals(min_value=0, max_value=100, places=4),
)
def test_cost_is_exact_at_nano_units_and_fee_is_five_percent_of_it(
    input_tokens, output_tokens, price_in, price_out
) -> None:
    price = Price("p", "m", price_in, price_out, "USD", NOW)
    cost = compute_cost(
        price=price,
        fx=identity_rate("USD"),
        fee_rate=Decimal("0.05"),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )
    exact = (Decimal(input_tokens) * price_in + Decimal(output_tokens) * price_out) / Decimal(
        1_000_000
    )
    assert abs(cost.provider_cost - exact) <= Decimal("0.0000000005")
    assert cost.total == cost.converted_cost + cost.fee_amount
    assert abs(cost.fee_amount - cost.converted_cost * Decimal("0.05")) <= Decimal("0.0000000005")


def test_cached_input_tokens_use_the_cached_price_when_there_is_one() -> None:
    price = Price("p", "m", Decimal(10), Decimal(0), "USD", NOW, cached_input_per_mtok=Decimal(1))
    cost = compute_cost(
        price=price,
        fx=identity_rate("USD"),
        fee_rate=Decimal(0),
        input_tokens=1_000_000,
        output_tokens=0,
        cached_tokens=500_000,
    )
    assert cost.provider_cost == Decimal("5.5")


def test_conversion_applies_the_rate_before_the_fee() -> None:
    price = Price("p", "m", Decimal(1), Decimal(0), "USD", NOW)
    fx = FxRate("r", "USD", "SEK", Decimal("10.5"), NOW)
    cost = compute_cost(
        price=price, fx=fx, fee_rate=Decimal("0.05"), input_tokens=1_000_000, output_tokens=0
    )
    assert (cost.provider_cost, cost.converted_cost, cost.fee_amount) == (
        Decimal(1),
        Decimal("10.5"),
        Decimal("0.525"),
    )


def test_the_price_in_effect_is_the_latest_whose_effective_from_has_passed() -> None:
    book = PriceBook.open(book_id=__import__("uuid").uuid4(), model="m")
    first = book.set_price(
        input_per_mtok=Decimal(1),
        output_per_mtok=Decimal(1),
        currency="USD",
        effective_from=NOW - timedelta(days=10),
    )
    second = book.set_price(
        input_per_mtok=Decimal(2), output_per_mtok=Decimal(2), currency="USD", effective_from=NOW
    )
    assert book.price_at(NOW - timedelta(days=1)).price_id == first
    assert book.price_at(NOW).price_id == second
    with pytest.raises(PriceNotFound):
        book.price_at(NOW - timedelta(days=11))
