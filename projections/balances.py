"""Balances per project: credits, posted, pending, available — from Account events."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from domain.account import Account
from projections.base import View, reads
from projections.db import Tx, as_decimal, iso

ZERO = Decimal(0)


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
                ZERO,
                ZERO,
                ZERO,
                ZERO,
                iso(event.timestamp),
                position,
            ),
        )

    @reads(*_BALANCE_MOVES)
    def _moved(self, tx: Tx, event: Any, position: int) -> None:
        account_id = str(event.originator_id)
        for table in ("lg_balances", "lg_test_balances"):
            row = tx.execute(
                f"SELECT credits, posted, pending FROM {table} WHERE account_id = %s",  # noqa: S608 - constant names
                (account_id,),
            ).fetchone()
            if row is not None:
                break
        else:
            return
        credits, posted, pending = (
            (as_decimal(row[name]) or ZERO) + delta
            for name, delta in zip(
                ("credits", "posted", "pending"), _BALANCE_MOVES[type(event)](event), strict=True
            )
        )
        tx.execute(
            f"UPDATE {table} SET credits = %s, posted = %s, pending = %s, available = %s, updated_at = %s, "
            "position = %s WHERE account_id = %s",  # noqa: S608 - one of two constant names
            (
                credits,
                posted,
                pending,
                credits - posted - pending,
                iso(event.timestamp),
                position,
                account_id,
            ),
        )
