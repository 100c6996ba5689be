"""Settlement rules as pure functions: what a request costs and what the balance is debited.

One home for each money rule of a request (README "How money moves"):

- the charge: usage x price (per million tokens, cached input at its own price) x FX rate,
  at internal precision (1e-9, half-even), nothing rounded for display here (`compute_cost`);
- the platform fee: DEFAULT_FEE_RATE (5 %) on managed-key usage, 0 % on the project's own
  provider key (BYOK), an Enterprise project's negotiated rate in place of the default
  (`fee_rate_for`);
- the OCR add-on: document pages priced on the gateway's OCR key, converted at the rate
  recorded with them, plus the same fee (`ocr_addon`);
- what is debited: everything with a managed key; with the project's own key only the fee
  and the OCR add-on (the provider bills the customer), while the whole cost still counts
  toward the key's daily budget (`debit_and_budget`);
- the abandoned-request rule: a request swept before it was dispatched is released in full;
  dispatched or streaming, the provider has billed at least the prompt, so its estimated
  input is charged at the admission price, no output (`abandoned_usage`).

The facts a charge records travel as one frozen `Posting` (domain/account.Account.post_charge).
Nothing here reads state or the clock.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal
from uuid import UUID

from domain.money import quantize_internal, token_cost
from domain.pricing import FxRate, Price
from domain.vocabulary import KeySource, Plan, RequestStatus

DEFAULT_FEE_RATE = Decimal("0.05")  # the platform fee on managed-key usage
BYOK_FEE_RATE = Decimal(0)  # no fee on the project's own provider key
KEY_SOURCE_MANAGED = KeySource.MANAGED.value
KEY_SOURCE_BYOK = KeySource.BYOK.value
USAGE_SOURCE_ESTIMATED = "estimated"  # the abandoned-request rule charged the estimate
ZERO = Decimal(0)


def fee_rate_for(plan: str, negotiated_fee_rate: Decimal, key_source: str) -> Decimal:
    """The fee rate a request pays: 0 with the project's own key, the negotiated rate on
    Enterprise, else the default."""
    if key_source == KEY_SOURCE_BYOK:
        return BYOK_FEE_RATE
    if plan == Plan.ENTERPRISE:
        return negotiated_fee_rate
    return DEFAULT_FEE_RATE


def is_own_key(key_source: str) -> bool:
    return key_source == KEY_SOURCE_BYOK


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


@dataclass(frozen=True, slots=True)
class OcrAddon:
    converted_cost: Decimal  # in the account currency
    fee_amount: Decimal

    @property
    def total(self) -> Decimal:
        return self.converted_cost + self.fee_amount


def ocr_addon(cost: Decimal, fx_rate: Decimal, fee_rate: Decimal) -> OcrAddon:
    """OCR pages (`cost` in the OCR price's currency) in the account currency, with the fee.
    OCR runs on the gateway's own key whatever the request's key source, so it is always
    debited, and carries the request's fee rate."""
    converted = quantize_internal(cost * fx_rate)
    return OcrAddon(converted, quantize_internal(converted * fee_rate))


def debit_and_budget(cost: CostBreakdown, key_source: str) -> tuple[Decimal, Decimal]:
    """(what the balance is debited, what counts toward the key's daily budget) for a model
    cost: with the project's own key only the fee is debited, the budget counts it all."""
    return (cost.fee_amount if is_own_key(key_source) else cost.total), cost.total


def abandoned_usage(status: str, estimated_input_tokens: int) -> tuple[int, int, int] | None:
    """Usage (input, output, cached) charged for a request swept in `status`, or None when
    its reservation is released in full (it never reached a provider)."""
    if status in (RequestStatus.DISPATCHED, RequestStatus.STREAMING):
        return (estimated_input_tokens, 0, 0)
    return None


@dataclass(frozen=True, slots=True)
class Posting:
    """The facts a charge records beside its amounts: pricing provenance (price, FX rate,
    fee with the ids of the events that set them), the usage charged and who served it.
    Field names are the stored field names of Account.ChargePosted / ChargeCorrected."""

    provider_cost: Decimal  # in provider_currency, before FX and fee
    provider_currency: str
    fee_amount: Decimal
    key_source: str  # KeySource
    usage_source: str  # "provider" | "estimated" | "capped"
    provider: str
    model: str
    upstream_model: str
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    key_id: UUID | None
    actor_id: str | None
    fx_rate: Decimal = Decimal(1)
    fx_rate_id: str | None = None
    price_id: str | None = None
    fee_rate: Decimal = ZERO

    def stored_fields(self, event_class: type) -> dict[str, object]:
        """The facts of this posting that `event_class` (Account.ChargePosted or
        ChargeCorrected) stores: its fields of the same names, the money at internal scale.
        A correction keeps the admission's price and rate, recorded with the first charge,
        so ChargeCorrected declares no price or rate fields and gets none."""
        stored = event_class.__dataclass_fields__  # type: ignore[attr-defined]
        facts: dict[str, object] = {
            name: getattr(self, name) for name in _POSTING_FIELDS if name in stored
        }
        facts["provider_cost"] = quantize_internal(self.provider_cost)
        facts["fee_amount"] = quantize_internal(self.fee_amount)
        return facts


_POSTING_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Posting))
