"""Balances per project: credits, posted, pending, available — from Account events."""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from domain.account import Account
from projections.base import View, reads
from projections.db import MONEY_SCALE, Tx, as_decimal, iso

ZERO = Decimal(0)
MONEY_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)


def _stored(amount: Decimal) -> Decimal:
    """An amount at the columns' scale (NUMERIC(38, 9)), as PostgreSQL keeps it, on SQLite
    too: a sum's exponent depends on which moves one batch summed (0 + 0 is "0", x - x is
    "0.000000000"), and a rebuild, which batches differently, must write the same text."""
    return amount.quantize(MONEY_QUANTUM, rounding=ROUND_HALF_UP)


def balance_table(mode: str) -> str:
    """Live balances and test balances (lg_test_ keys) live apart: a test balance never
    shows in a live read, a total, or a reconciliation."""
    return "lg_test_balances" if mode == "test" else "lg_balances"


# How each event moves a balance: (credits, posted, pending) deltas. Available is always
# credits - posted - pending.
_BALANCE_MOVES: dict[type[Any], Callable[[Any], tuple[Decimal, Decimal, Decimal]]] = {
    Account.ToppedUp: lambda e: (e.amount, ZERO, ZERO),
    Account.Adjusted: lambda e: (e.amount, ZERO, ZERO),
    Account.Reserved: lambda e: (ZERO, ZERO, e.amount),
    Account.ChargePosted: lambda e: (ZERO, e.amount, -e.reserved_amount),
    Account.ReservationReleased: lambda e: (ZERO, ZERO, -e.amount),
    Account.ChargeCorrected: lambda e: (ZERO, e.amount, ZERO),
}


class BalancesView(View):
    name = "balances"
    tables = ("lg_balances", "lg_test_balances")

    @reads(Account.Opened)
    def _opened(self, tx: Tx, event: Any, position: int) -> None:
        table = balance_table(event.mode)
        tx.execute(
            f"INSERT INTO {table} (account_id, project_id, currency, credits, posted, pending, available, "
            "updated_at, position) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (account_id) DO NOTHING",  # noqa: S608 - table name from balance_table
            (
                str(event.originator_id),
                str(event.project_id),
                event.currency,
                *(_stored(ZERO),) * 4,
                iso(event.timestamp),
                position,
            ),
        )

    def __init__(self) -> None:
        # account id -> [credits, posted, pending deltas, last timestamp, last position] of
        # the batch being applied: an Account moves several times per batch (a reservation
        # and a charge per request), and its row is read and written once per batch.
        self._moves: dict[str, list[Any]] = {}

    @reads(*_BALANCE_MOVES)
    def _moved(self, tx: Tx, event: Any, position: int) -> None:
        credits, posted, pending = _BALANCE_MOVES[type(event)](event)
        moved = self._moves.get(str(event.originator_id))
        if moved is None:
            self._moves[str(event.originator_id)] = [
                credits,
                posted,
                pending,
                event.timestamp,
                position,
            ]
            return
        moved[0] += credits
        moved[1] += posted
        moved[2] += pending
        moved[3] = event.timestamp
        moved[4] = position

    def flush(self, tx: Tx) -> None:
        """Each moved Account's row, once: the sum of the batch's moves (exact Decimal
        sums, the same row the moves one by one would leave), the last event's time and
        position."""
        moves, self._moves = self._moves, {}
        for account_id, (d_credits, d_posted, d_pending, timestamp, position) in moves.items():
            for table in ("lg_balances", "lg_test_balances"):
                row = tx.execute(
                    f"SELECT credits, posted, pending FROM {table} WHERE account_id = %s",  # noqa: S608 - constant names
                    (account_id,),
                ).fetchone()
                if row is not None:
                    break
            else:
                continue
            credits = (as_decimal(row["credits"]) or ZERO) + d_credits
            posted = (as_decimal(row["posted"]) or ZERO) + d_posted
            pending = (as_decimal(row["pending"]) or ZERO) + d_pending
            tx.execute(
                f"UPDATE {table} SET credits = %s, posted = %s, pending = %s, available = %s, updated_at = %s, "
                "position = %s WHERE account_id = %s",  # noqa: S608 - one of two constant names
                (
                    _stored(credits),
                    _stored(posted),
                    _stored(pending),
                    _stored(credits - posted - pending),
                    iso(timestamp),
                    position,
                    account_id,
                ),
            )

    def discard(self) -> None:
        self._moves = {}

    def reset(self, tx: Tx) -> None:
        super().reset(tx)
        self._moves = {}
