"""Money as a Decimal with an explicit currency.

Internal scale is 1e-9 of the unit (nano-units). Arithmetic keeps that scale; rounding to
a display or invoice precision happens only where money leaves the system, and the caller
names the rounding mode there.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from domain.errors import CurrencyMismatch, InvalidAmount

SUPPORTED_CURRENCIES: frozenset[str] = frozenset({"EUR", "USD", "SEK"})
INTERNAL_QUANTUM = Decimal("0.000000001")
DISPLAY_QUANTUM = Decimal("0.01")
TOKENS_PER_MILLION = Decimal(1_000_000)


def to_decimal(value: object) -> Decimal:
    """Parse a user-supplied amount. Floats are refused: they cannot carry money exactly."""
    if isinstance(value, float):
        raise InvalidAmount("amounts must be given as strings or integers, never floats")
    if isinstance(value, bool):
        raise InvalidAmount("an amount cannot be a boolean")
    try:
        result = Decimal(str(value).strip())
    except (InvalidOperation, ValueError) as error:
        raise InvalidAmount(f"not a decimal amount: {str(value)[:40]!r}") from error
    if not result.is_finite():
        raise InvalidAmount("an amount must be finite")
    return result


def quantize_internal(amount: Decimal) -> Decimal:
    # Internal precision: nano-units, banker's rounding so that many tiny charges do not drift.
    return amount.quantize(INTERNAL_QUANTUM, rounding=ROUND_HALF_EVEN)


def check_currency(currency: str) -> str:
    code = currency.strip().upper()
    if code not in SUPPORTED_CURRENCIES:
        raise InvalidAmount(
            f"unsupported currency {currency[:8]!r}; supported: {', '.join(sorted(SUPPORTED_CURRENCIES))}"
        )
    return code


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            raise InvalidAmount("Money.amount must be a Decimal")
        object.__setattr__(self, "amount", quantize_internal(self.amount))
        object.__setattr__(self, "currency", check_currency(self.currency))

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(Decimal(0), currency)

    @classmethod
    def parse(cls, amount: object, currency: str) -> Money:
        return cls(to_decimal(amount), currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatch(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount - other.amount, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount >= other.amount

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def times(self, factor: Decimal) -> Money:
        return Money(self.amount * factor, self.currency)

    def min(self, other: Money) -> Money:
        return self if self <= other else other

    def is_negative(self) -> bool:
        return self.amount < 0

    def is_zero(self) -> bool:
        return self.amount == 0

    def rounded(self, quantum: Decimal = DISPLAY_QUANTUM, *, rounding: str) -> Decimal:
        """For display and invoices only; the caller names the rounding mode."""
        return self.amount.quantize(quantum, rounding=rounding)

    def as_string(self) -> str:
        """Full internal precision as a plain string (JSON carries money as strings)."""
        return format(self.amount, "f")

    def __str__(self) -> str:
        return f"{self.as_string()} {self.currency}"


def token_cost(tokens: int, price_per_million: Decimal) -> Decimal:
    return Decimal(tokens) * price_per_million / TOKENS_PER_MILLION
