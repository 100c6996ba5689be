"""Named limits on the Account: a reservation holds against a set of them at once.

A limit is a cap on what a set of requests may cost, kept on the project's Account because
the Account is the single consistency boundary for money: every reservation against it is
decided by one writer, so concurrent requests overshoot a limit by zero, in one process or
several (a reservation in another process conflicts on the Account's version and is retried
against the new state). Beside the key's daily budget (still kept by its own buckets in
domain/account.py), the limits are:

- `trace:<trace id>`: a trace's budget (domain/trace.py), closed when the trace is closed
  or expires;
- `credential:<jti>`: a temporary credential's budget (issue 14), closed on revocation.

A limit is named `<kind>:<id>`; the kind picks the domain errors a refusal raises, so each
surface answers its own code (`trace_budget_exceeded`, `trace_closed`, …). What a request
counts toward a limit is what it counts toward the key's budget: its cost (with the
project's own provider key the whole cost, while only the fee is debited).

    check:   closed (or past `expires_at`) → the kind's closed error;
             pending + posted + amount > cap → the kind's exceeded error
    reserve: pending += amount                       (LimitsHeld, with Account.Reserved)
    settle:  pending -= held; posted += kept          (applied with the charge or release)

A closed limit with nothing pending is dropped from the Account's state (its name then
reads as closed), so the state stays bounded by the open limits. Corrections of swept
requests (Account.ChargeCorrected) count toward the key's budget only, not toward a named
limit: the request's holds were settled by the sweep.

These functions hold the rules; the Account keeps the state (`named_limits`,
`limit_holds`) and calls them from `reserve`, `post_charge` and `_settle`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from eventsourcing.domain import Aggregate

from domain.errors import DomainError, InvalidCommand
from domain.money import quantize_internal

ZERO = Decimal(0)
LIMIT_NAME_CHARS_MAX = 120
LIMITS_PER_RESERVATION_MAX = 8  # a key budget, a trace, a credential: a handful at most
# Open limits one Account keeps in its state (and its snapshots): a bound on memory, not a
# product rule; a project needing more concurrent traces closes finished ones.
OPEN_LIMITS_PER_ACCOUNT_MAX = 10_000
CLOSE_REASON_CHARS_MAX = 40

KIND_TRACE = "trace"
KIND_CREDENTIAL = "credential"


class NamedLimitExceeded(DomainError):
    """A reservation would take a named limit past its cap. details: limit, cap, spent,
    required, currency."""

    code = "limit_exceeded"


class NamedLimitClosed(DomainError):
    """The named limit is closed (or expired): nothing more reserves against it."""

    code = "limit_closed"


class TraceBudgetExceeded(NamedLimitExceeded):
    code = "trace_budget_exceeded"


class TraceClosed(NamedLimitClosed):
    code = "trace_closed"


class CredentialBudgetExceeded(NamedLimitExceeded):
    code = "credential_budget_exceeded"


class CredentialClosed(NamedLimitClosed):
    """Revoked or expired: the credential's limit takes no more reservations."""

    code = "credential_revoked"


# kind -> (error when the cap would be passed, error when the limit is closed)
ERRORS_BY_KIND: dict[str, tuple[type[NamedLimitExceeded], type[NamedLimitClosed]]] = {
    KIND_TRACE: (TraceBudgetExceeded, TraceClosed),
    KIND_CREDENTIAL: (CredentialBudgetExceeded, CredentialClosed),
}


def limit_name(kind: str, identity: str) -> str:
    if kind not in ERRORS_BY_KIND:
        raise InvalidCommand(f"unknown limit kind {kind[:20]!r}")
    name = f"{kind}:{identity}"
    if not identity or len(name) > LIMIT_NAME_CHARS_MAX:
        raise InvalidCommand(f"a limit name has 1 to {LIMIT_NAME_CHARS_MAX} characters")
    return name


def kind_of(name: str) -> str:
    return name.split(":", 1)[0]


def _errors(name: str) -> tuple[type[NamedLimitExceeded], type[NamedLimitClosed]]:
    return ERRORS_BY_KIND.get(kind_of(name), (NamedLimitExceeded, NamedLimitClosed))


# --- the state on the Account ------------------------------------------------------------
# setdefault: an Account (or a snapshot of one) from before named limits restores without
# these fields.


def _limits(account: Any) -> dict[str, dict[str, Any]]:
    return account.__dict__.setdefault("named_limits", {})  # type: ignore[no-any-return]


def _holds(account: Any) -> dict[str, dict[str, Any]]:
    return account.__dict__.setdefault("limit_holds", {})  # type: ignore[no-any-return]


# --- events (applied to the Account) -------------------------------------------------------


class LimitOpened(Aggregate.Event):
    """A named limit starts on this Account. `cap` None: no cap (only closable)."""

    name: str
    kind: str
    cap: Decimal | None
    expires_at: datetime | None
    opened_at: datetime

    def apply(self, aggregate: Any) -> None:
        _limits(aggregate)[self.name] = {
            "kind": self.kind,
            "cap": self.cap,
            "pending": ZERO,
            "posted": ZERO,
            "expires_at": self.expires_at,
            "closed_reason": None,
        }


class LimitClosed(Aggregate.Event):
    """Nothing more reserves against the limit (what is pending still settles)."""

    name: str
    reason: str
    closed_at: datetime

    def apply(self, aggregate: Any) -> None:
        limit = _limits(aggregate).get(self.name)
        if limit is None:
            return
        limit["closed_reason"] = self.reason
        _drop_if_done(aggregate, self.name)


class LimitsHeld(Aggregate.Event):
    """A reservation (the Account.Reserved just before it) also holds `amount` against
    each of `names`. Settled with the reservation (Account._settle)."""

    request_id: str
    names: tuple[str, ...]
    amount: Decimal
    held_at: datetime

    def apply(self, aggregate: Any) -> None:
        limits = _limits(aggregate)
        for name in self.names:
            limits[name]["pending"] += self.amount
        _holds(aggregate)[self.request_id] = {"names": list(self.names), "amount": self.amount}


def _drop_if_done(account: Any, name: str) -> None:
    limits = _limits(account)
    limit = limits.get(name)
    if limit is not None and limit["closed_reason"] is not None and limit["pending"] == ZERO:
        del limits[name]


# --- rules -----------------------------------------------------------------------------------


def _closed_reason(limit: dict[str, Any] | None, now: datetime) -> str | None:
    if limit is None:
        return "closed"  # never opened here, or closed and settled
    if limit["closed_reason"] is not None:
        return str(limit["closed_reason"])
    expires_at = limit["expires_at"]
    if expires_at is not None and now >= expires_at:
        return "expired"
    return None


def open_limit(
    account: Any,
    *,
    name: str,
    cap: Decimal | None,
    expires_at: datetime | None,
    now: datetime,
) -> bool:
    """Start a limit; False (nothing recorded) when one of that name exists already."""
    limits = _limits(account)
    if name in limits:
        return False
    if len(limits) >= OPEN_LIMITS_PER_ACCOUNT_MAX:
        raise InvalidCommand(
            f"this project has {OPEN_LIMITS_PER_ACCOUNT_MAX} open limits (traces, "
            "credentials); close finished ones first"
        )
    if cap is not None:
        cap = quantize_internal(cap)
        if cap < 0:
            raise InvalidCommand("a limit's cap cannot be negative")
    account.trigger_event(
        LimitOpened,
        name=name,
        kind=kind_of(name),
        cap=cap,
        expires_at=expires_at,
        opened_at=now,
    )
    return True


def close_limit(account: Any, *, name: str, reason: str, now: datetime) -> bool:
    """Close a limit at once for every later reservation; False when already closed."""
    limit = _limits(account).get(name)
    if limit is None or limit["closed_reason"] is not None:
        return False
    account.trigger_event(
        LimitClosed, name=name, reason=reason[:CLOSE_REASON_CHARS_MAX], closed_at=now
    )
    return True


def check_limits(
    account: Any, names: Sequence[str], amount: Decimal, now: datetime, currency: str
) -> None:
    """Raise the first refusal a reservation of `amount` meets; records nothing."""
    if len(names) > LIMITS_PER_RESERVATION_MAX:
        raise InvalidCommand(f"a reservation holds at most {LIMITS_PER_RESERVATION_MAX} limits")
    if len(set(names)) != len(names):
        raise InvalidCommand("a reservation names each limit once")
    limits = _limits(account)
    for name in names:
        exceeded, closed = _errors(name)
        limit = limits.get(name)
        reason = _closed_reason(limit, now)
        if reason is not None:
            raise closed(f"this {kind_of(name)} is {reason}", limit=name, reason=reason)
        assert limit is not None  # _closed_reason answers "closed" for a missing limit
        cap = limit["cap"]
        if cap is None:
            continue
        spent = limit["pending"] + limit["posted"]
        if spent + amount > cap:
            raise exceeded(
                f"this {kind_of(name)}'s budget would be exceeded",
                limit=name,
                budget=format(cap, "f"),
                spent=format(spent, "f"),
                required=format(amount, "f"),
                currency=currency,
            )


def hold_limits(
    account: Any, *, request_id: str, names: Sequence[str], amount: Decimal, now: datetime
) -> None:
    """Record the holds of a reservation just decided (check_limits passed)."""
    if names:
        account.trigger_event(
            LimitsHeld, request_id=request_id, names=tuple(names), amount=amount, held_at=now
        )


def settle_limits(account: Any, request_id: str, kept: Decimal) -> None:
    """A reservation is settled: its holds go, `kept` (what it cost) stays counted.
    Runs inside the charge's or the release's apply step (also on replay)."""
    hold = _holds(account).pop(request_id, None)
    if hold is None:
        return
    limits = _limits(account)
    for name in hold["names"]:
        limit = limits.get(name)
        if limit is None:
            continue
        limit["pending"] -= hold["amount"]
        limit["posted"] += kept
        _drop_if_done(account, name)


def limit_headroom(account: Any, request_id: str) -> Decimal | None:
    """How much more than its hold a request may be charged without passing any of its
    capped limits (its own hold is part of what is spent); None when it holds none."""
    hold = _holds(account).get(request_id)
    if hold is None:
        return None
    limits = _limits(account)
    headroom: Decimal | None = None
    for name in hold["names"]:
        limit = limits.get(name)
        if limit is None or limit["cap"] is None:
            continue
        room = max(limit["cap"] - limit["pending"] - limit["posted"], ZERO)
        headroom = room if headroom is None else min(headroom, room)
    return headroom


def limit_status(account: Any, name: str, now: datetime) -> dict[str, Any] | None:
    """The live figures of an open limit (None once closed and settled)."""
    limit = _limits(account).get(name)
    if limit is None:
        return None
    return {
        "cap": limit["cap"],
        "pending": limit["pending"],
        "posted": limit["posted"],
        "closed_reason": _closed_reason(limit, now),
    }


def holds_of(account: Any, request_id: str) -> tuple[str, ...]:
    hold = _holds(account).get(request_id)
    return () if hold is None else tuple(hold["names"])
