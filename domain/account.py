"""The project's prepaid ledger, two-phase like TigerBeetle's pending transfers.

Each event is declared once, with its stored fields and its effect (`apply`), and fired with
`trigger_event(EventClass, **fields)`; a charge's pricing and usage facts arrive as one
frozen `Posting` (domain/settlement.py).

    available = credits - posted - pending   (never below zero)

A request reserves an estimate before dispatch (pending), then one ChargePosted turns the
reservation into the actual charge and releases the rest in the same event; or
ReservationReleased gives it all back. A reservation is settled once: a second post or
release for the same request finds no reservation and is refused. Corrections are new
Adjusted events, never edits.

Per-key daily budgets live here too, because reservations must count against them under
any concurrency: the Account is the single consistency boundary for money. A budget counts
what a request costs, which is what the balance is debited except with the project's own
provider key (BYOK): then only the fee is reserved and debited (the provider bills the
customer directly), while the whole cost still counts toward the key's budget
(OwnKeyReserved / OwnKeyChargePosted carry that budget amount). So does the
plan's monthly request count: every admitted request reserves (possibly zero), and the
count of Reserved events per calendar month (UTC, from `reserved_at`) is derived on replay,
so the quota check and the count it guards are decided by the same single writer.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.errors import (
    BudgetExceeded,
    CurrencyMismatch,
    DuplicateRequest,
    InsufficientFunds,
    InvalidAmount,
    InvalidCommand,
    QuotaExceeded,
    ReservationNotFound,
)
from domain.limits import check_limits, hold_limits, limit_headroom, settle_limits
from domain.money import check_currency, quantize_internal
from domain.plans import month_key, next_day_start, next_month_start
from domain.settlement import Posting
from domain.vocabulary import MODES, Mode

ZERO = Decimal(0)
REFERENCE_LENGTH_MAX = 200


def _budget_bucket(key_id: UUID | None, day: date) -> str:
    return f"{key_id}|{day.isoformat()}"


class Account(Aggregate):
    class Opened(Aggregate.Created):
        """v2 adds `mode`: "live", or "test" for a project's separate test balance."""

        class_version = 2
        project_id: UUID
        currency: str
        mode: str

        @staticmethod
        def upcast_v1_v2(state: dict[str, object]) -> None:
            state["mode"] = "live"  # test balances did not exist before v2

    class ToppedUp(Aggregate.Event):
        amount: Decimal
        reference: str
        topped_up_at: datetime

        def apply(self, aggregate: Account) -> None:
            aggregate.credits += self.amount
            aggregate.references[self.reference] = True

    class Reserved(Aggregate.Event):
        request_id: str
        amount: Decimal
        key_id: UUID | None
        budget_day: date
        reserved_at: datetime

        def apply(self, aggregate: Account) -> None:
            aggregate._hold(self, budget_amount=self.amount)

    class ChargePosted(Aggregate.Event):
        request_id: str
        reserved_amount: Decimal
        amount: Decimal  # what the balance is debited: provider cost converted + fee
        released_amount: Decimal  # reserved_amount - amount, back to available (may be 0)
        shortfall_amount: Decimal  # actual cost the balance could not cover (written off)
        provider_cost: Decimal  # in provider_currency, before FX and fee
        provider_currency: str
        fx_rate: Decimal
        fx_rate_id: str | None
        price_id: str | None
        fee_rate: Decimal
        fee_amount: Decimal
        key_source: str  # "managed" | "byok"
        usage_source: str  # "provider" | "estimated"
        provider: str
        model: str
        upstream_model: str
        input_tokens: int
        output_tokens: int
        cached_tokens: int
        key_id: UUID | None
        actor_id: str | None
        posted_at: datetime

        def apply(self, aggregate: Account) -> None:
            aggregate._settle(self.request_id, self.reserved_amount, self.amount)
            aggregate.posted += self.amount

    class ChargeCorrected(Aggregate.Event):
        """A request already settled by the sweeper (charged its estimated input) turned out
        to be served: the difference to its real usage is debited (`amount` > 0) or given
        back (`amount` < 0). A correction, never an edit of the earlier charge."""

        request_id: str
        previous_amount: Decimal  # what the request had been charged before
        amount: Decimal  # signed difference debited now
        shortfall_amount: Decimal
        provider_cost: Decimal  # the real usage's whole provider cost (not a difference)
        provider_currency: str
        fee_amount: Decimal
        key_source: str
        usage_source: str
        provider: str
        model: str
        upstream_model: str
        input_tokens: int
        output_tokens: int
        cached_tokens: int
        key_id: UUID | None
        actor_id: str | None
        corrected_at: datetime

        def apply(self, aggregate: Account) -> None:
            aggregate.posted += self.amount
            # The correction counts toward the key's budget of the day it is made.
            bucket = _budget_bucket(self.key_id, self.corrected_at.astimezone(UTC).date())
            aggregate.budget_spend[bucket] = aggregate.budget_spend.get(bucket, ZERO) + self.amount

    class ReservationReleased(Aggregate.Event):
        request_id: str
        amount: Decimal
        reason: str
        released_at: datetime

        def apply(self, aggregate: Account) -> None:
            aggregate._settle(self.request_id, self.amount, ZERO)

    class Adjusted(Aggregate.Event):
        amount: Decimal  # signed: + credit, - debit
        reason: str
        reference: str
        adjusted_at: datetime

        def apply(self, aggregate: Account) -> None:
            aggregate.credits += self.amount
            aggregate.references[self.reference] = True

    @classmethod
    def open(
        cls, *, project_id: UUID, currency: str, account_id: UUID, mode: str = Mode.LIVE.value
    ) -> Account:
        if mode not in MODES:
            raise InvalidCommand("an account's mode is live or test")
        return cls._create(
            cls.Opened,
            id=account_id,
            project_id=project_id,
            currency=check_currency(currency),
            mode=mode,
        )

    def __init__(self, project_id: UUID, currency: str, mode: str = Mode.LIVE.value) -> None:
        self.project_id = project_id
        self.currency = currency
        self.mode = mode
        self.credits = ZERO
        self.posted = ZERO
        self.pending_total = ZERO
        self.pending: dict[str, Decimal] = {}
        self.pending_buckets: dict[str, str] = {}  # request_id -> budget bucket
        self.budget_spend: dict[str, Decimal] = {}  # bucket -> posted + pending that day
        # A dict, not a set, so the state stays JSON-serialisable for snapshots.
        self.references: dict[str, bool] = {}
        self.monthly_requests: dict[str, int] = {}  # "YYYY-MM" (UTC) -> admitted requests
        # request_id -> what its reservation counts toward the budget, where that differs
        # from what it holds from the balance (BYOK).
        self.pending_budget: dict[str, Decimal] = {}

    # --- queries -------------------------------------------------------------------------

    @property
    def available(self) -> Decimal:
        return self.credits - self.posted - self.pending_total

    def spent_on(self, key_id: UUID | None, day: date) -> Decimal:
        return self.budget_spend.get(_budget_bucket(key_id, day), ZERO)

    def has_reservation(self, request_id: str) -> bool:
        return request_id in self.pending

    def requests_in_month(self, moment: datetime) -> int:
        return self._monthly().get(month_key(moment), 0)

    def _monthly(self) -> dict[str, int]:
        # setdefault: a snapshot taken before this field existed restores without it.
        return self.__dict__.setdefault("monthly_requests", {})  # type: ignore[no-any-return]

    def _pending_budget(self) -> dict[str, Decimal]:
        return self.__dict__.setdefault("pending_budget", {})  # type: ignore[no-any-return]

    # --- commands ------------------------------------------------------------------------

    def check_currency(self, currency: str) -> None:
        if check_currency(currency) != self.currency:
            raise CurrencyMismatch(
                f"this account keeps {self.currency}; got {currency}", expected=self.currency
            )

    def top_up(self, *, amount: Decimal, currency: str, reference: str, now: datetime) -> bool:
        """Returns False (and records nothing) when the reference was already used."""
        self.check_currency(currency)
        amount = quantize_internal(amount)
        if amount <= 0:
            raise InvalidAmount("a top-up must be positive")
        clean = reference.strip()
        if not clean or len(clean) > REFERENCE_LENGTH_MAX:
            raise InvalidCommand(
                f"a top-up reference must have 1 to {REFERENCE_LENGTH_MAX} characters"
            )
        if clean in self.references:
            return False
        self.trigger_event(self.ToppedUp, amount=amount, reference=clean, topped_up_at=now)
        return True

    def reserve(
        self,
        *,
        request_id: str,
        amount: Decimal,
        key_id: UUID | None,
        daily_budget: Decimal | None,
        now: datetime,
        monthly_requests_max: int | None = None,
        budget_amount: Decimal | None = None,
        limits: Sequence[str] = (),
    ) -> None:
        """Hold `amount` from the balance; `budget_amount` (default: `amount`) is what the
        reservation counts toward the key's daily budget (the cost, with a BYOK key) and
        toward each named limit in `limits` (a trace, a credential: domain/limits.py)."""
        amount = quantize_internal(amount)
        budget = amount if budget_amount is None else quantize_internal(budget_amount)
        if amount < 0 or budget < 0:
            raise InvalidAmount("a reservation cannot be negative")
        if request_id in self.pending:
            # The request id is the aggregate's identity (derived from the Idempotency-Key
            # when there is one): a second reservation for it is the same request again —
            # e.g. another process admitted it between this process's two reads.
            raise DuplicateRequest(
                "this request was already admitted; it is not run or charged again",
                original_request_id=request_id,
                original_status="admitted",
            )
        if monthly_requests_max is not None:
            used = self.requests_in_month(now)
            if used >= monthly_requests_max:
                resets_at = next_month_start(now)
                raise QuotaExceeded(
                    "this project's plan allows "
                    f"{monthly_requests_max} requests per calendar month (UTC); all are used",
                    monthly_requests_max=monthly_requests_max,
                    requests_this_month=used,
                    resets_at=resets_at.isoformat().replace("+00:00", "Z"),
                    retry_after_seconds=max(1, int((resets_at - now).total_seconds())),
                )
        if amount > self.available:
            raise InsufficientFunds(
                "the project's balance does not cover this request's estimated cost",
                available=str(self.available),
                required=str(amount),
                currency=self.currency,
            )
        day = now.astimezone(UTC).date()  # budgets reset at 00:00 UTC
        if daily_budget is not None:
            spent = self.spent_on(key_id, day)
            if spent + budget > daily_budget:
                resets_at = next_day_start(now)
                raise BudgetExceeded(
                    "this key's daily budget would be exceeded",
                    daily_budget=format(daily_budget, "f"),
                    spent_today=format(spent, "f"),
                    required=format(budget, "f"),
                    currency=self.currency,
                    resets_at=resets_at.isoformat().replace("+00:00", "Z"),
                )
        check_limits(self, limits, budget, now, self.currency)
        facts: dict[str, Any] = {
            "request_id": request_id,
            "amount": amount,
            "key_id": key_id,
            "budget_day": day,
            "reserved_at": now,
        }
        if budget != amount:
            self.trigger_event(OwnKeyReserved, budget_amount=budget, **facts)
        else:
            self.trigger_event(self.Reserved, **facts)
        hold_limits(self, request_id=request_id, names=limits, amount=budget, now=now)

    def _hold(self, reserved: Account.Reserved, *, budget_amount: Decimal) -> None:
        """A reservation's effect: `reserved.amount` held from the balance, `budget_amount`
        counted toward the key's budget of its day, one more request in its month."""
        self.pending[reserved.request_id] = reserved.amount
        self.pending_total += reserved.amount
        bucket = _budget_bucket(reserved.key_id, reserved.budget_day)
        self.pending_buckets[reserved.request_id] = bucket
        self.budget_spend[bucket] = self.budget_spend.get(bucket, ZERO) + budget_amount
        monthly = self._monthly()
        month = month_key(reserved.reserved_at)
        monthly[month] = monthly.get(month, 0) + 1

    def post_charge(
        self,
        *,
        request_id: str,
        actual_amount: Decimal,
        posting: Posting,
        now: datetime,
        daily_budget: Decimal | None = None,
        budget_amount: Decimal | None = None,
        cap_at_reservation: bool = False,
    ) -> Decimal:
        """Post the actual charge, release the rest. Returns the amount debited.

        `budget_amount` (default: what is debited) is what the charge counts toward the
        key's daily budget: with a BYOK key the whole cost, while only the fee is debited.
        `cap_at_reservation`: usage the upstream reported beyond what the request could
        produce is never collected beyond the reservation (and is no shortfall either: it
        is an upstream error, flagged for reconciliation)."""
        if request_id not in self.pending:
            raise ReservationNotFound("no open reservation for this request (already settled?)")
        actual_amount = quantize_internal(actual_amount)
        if actual_amount < 0:
            raise InvalidAmount("a charge cannot be negative")
        reserved = self.pending[request_id]
        if cap_at_reservation:
            actual_amount = min(actual_amount, reserved)
        # The balance never goes below zero: beyond the reservation we can only take what is
        # available; the rest is recorded as a shortfall (written off), never as a debt.
        collectable = reserved + self.available
        if daily_budget is not None:
            # Nor does a key's daily budget: an actual cost above the estimate (a prompt that
            # tokenised longer upstream) is collected only up to the budget's headroom.
            spent = self.budget_spend.get(self.pending_buckets[request_id], ZERO)
            collectable = min(collectable, reserved + max(daily_budget - spent, ZERO))
        headroom = limit_headroom(self, request_id)  # the same for each named limit held
        if headroom is not None:
            collectable = min(collectable, reserved + headroom)
        amount = min(actual_amount, collectable)
        shortfall = actual_amount - amount
        released = max(reserved - amount, ZERO)
        facts: dict[str, Any] = {
            "request_id": request_id,
            "reserved_amount": reserved,
            "amount": amount,
            "released_amount": released,
            "shortfall_amount": shortfall,
            **posting.stored_fields(self.ChargePosted),
            "posted_at": now,
        }
        if request_id in self._pending_budget():
            # Reserved with the project's own key: the budget keeps counting the cost.
            budgeted = amount if budget_amount is None else quantize_internal(budget_amount)
            self.trigger_event(OwnKeyChargePosted, budget_amount=budgeted, **facts)
        else:
            self.trigger_event(self.ChargePosted, **facts)
        return amount

    def correct_charge(
        self,
        *,
        request_id: str,
        previous_amount: Decimal,
        actual_amount: Decimal,
        posting: Posting,
        now: datetime,
    ) -> Decimal:
        """A swept request that was served after all: debit the difference between its real
        charge and what the sweep took (never below zero: beyond what is available the rest
        is a shortfall), or give back an excess. Returns the signed difference applied."""
        if request_id in self.pending:
            raise InvalidCommand("a request with an open reservation is charged, not corrected")
        actual_amount = quantize_internal(actual_amount)
        previous_amount = quantize_internal(previous_amount)
        if actual_amount < 0 or previous_amount < 0:
            raise InvalidAmount("a charge cannot be negative")
        difference = actual_amount - previous_amount
        applied = min(difference, max(self.available, ZERO))
        shortfall = difference - applied if difference > 0 else ZERO
        if difference <= 0:
            applied = difference
        self.trigger_event(
            self.ChargeCorrected,
            request_id=request_id,
            previous_amount=previous_amount,
            amount=applied,
            shortfall_amount=shortfall,
            **posting.stored_fields(self.ChargeCorrected),
            corrected_at=now,
        )
        return applied

    def release(self, *, request_id: str, reason: str, now: datetime) -> Decimal:
        if request_id not in self.pending:
            raise ReservationNotFound("no open reservation for this request (already settled?)")
        amount = self.pending[request_id]
        self.trigger_event(
            self.ReservationReleased,
            request_id=request_id,
            amount=amount,
            reason=reason[:100],
            released_at=now,
        )
        return amount

    def _settle(self, request_id: str, reserved: Decimal, kept: Decimal) -> None:
        """Close a reservation; `kept` is what stays counted toward the budget."""
        del self.pending[request_id]
        self.pending_total -= reserved
        budgeted = self._pending_budget().pop(request_id, reserved)
        bucket = self.pending_buckets.pop(request_id)
        self.budget_spend[bucket] = self.budget_spend.get(bucket, ZERO) - budgeted + kept
        settle_limits(self, request_id, kept)

    def adjust(self, *, amount: Decimal, reason: str, reference: str, now: datetime) -> bool:
        amount = quantize_internal(amount)
        if amount == 0:
            raise InvalidAmount("an adjustment cannot be zero")
        clean = reference.strip()
        if not clean or len(clean) > REFERENCE_LENGTH_MAX:
            raise InvalidCommand("an adjustment needs a reference")
        if clean in self.references:
            return False
        if amount < 0 and -amount > self.available:
            raise InsufficientFunds(
                "a debit adjustment cannot take the balance below zero",
                available=str(self.available),
                required=str(-amount),
                currency=self.currency,
            )
        self.trigger_event(
            self.Adjusted, amount=amount, reason=reason[:200], reference=clean, adjusted_at=now
        )
        return True


# Event classes that extend another one are declared after the aggregate: eventsourcing
# redefines the nested event classes when it builds Account, so a subclass must extend the
# final class (projections and replays that match ChargePosted or Reserved then match these).
# Each applies its own effect.


class OwnKeyReserved(Account.Reserved):
    """A reservation with the project's own provider key (BYOK): `amount` (the fee) is held
    from the balance, `budget_amount` (the whole estimated cost) counts toward the key's
    daily budget."""

    budget_amount: Decimal

    def apply(self, aggregate: Account) -> None:  # type: ignore[override]
        aggregate._hold(self, budget_amount=self.budget_amount)
        aggregate._pending_budget()[self.request_id] = self.budget_amount


class OwnKeyChargePosted(Account.ChargePosted):
    """A charge with the project's own provider key: `amount` (the fee) is debited, the
    provider cost is recorded (the provider bills the customer), and `budget_amount`
    (converted cost + fee) is what the key's daily budget counts."""

    budget_amount: Decimal

    def apply(self, aggregate: Account) -> None:  # type: ignore[override]
        aggregate._settle(self.request_id, self.reserved_amount, self.budget_amount)
        aggregate.posted += self.amount


for _extension in (OwnKeyReserved, OwnKeyChargePosted):
    _extension.__qualname__ = f"Account.{_extension.__name__}"
    setattr(Account, _extension.__name__, _extension)
