"""Balances per project: credits, posted, pending, available — from Account events."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from domain.account import Account
from projections.base import View
from projections.db import Tx, as_decimal, iso

ZERO = Decimal(0)


def balance_table(mode: str) -> str:
    """Live balances and test balances (lg_test_ keys) live apart: a test balance never
    shows in a live read, a total, or a reconciliation."""
    return "lg_test_balances" if mode == "test" else "lg_balances"


class BalancesView(View):
    name = "balances"
    tables = ("lg_balances", "lg_test_balances")
    event_types = (
        Account.Opened,
        Account.ToppedUp,
        Account.Reserved,
        Account.ChargePosted,
        Account.ReservationReleased,
        Account.Adjusted,
        Account.ChargeCorrected,
    )

    def apply(self, tx: Tx, event: Any, position: int) -> None:
        account_id = str(event.originator_id)
        if isinstance(event, Account.Opened):
            table = balance_table(event.mode)
            tx.execute(
                f"INSERT INTO {table} (account_id, project_id, currency, credits, posted, pending, available, "
                "updated_at, position) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (account_id) DO NOTHING",  # noqa: S608 - table name from balance_table
                (
                    account_id,
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
            return
        table = "lg_balances"
        row = tx.execute(
            "SELECT credits, posted, pending FROM lg_balances WHERE account_id = %s", (account_id,)
        ).fetchone()
        if row is None:
            table = "lg_test_balances"
            row = tx.execute(
                "SELECT credits, posted, pending FROM lg_test_balances WHERE account_id = %s",
                (account_id,),
            ).fetchone()
        if row is None:
            return
        credits, posted, pending = (
            as_decimal(row[k]) or ZERO for k in ("credits", "posted", "pending")
        )
        if isinstance(event, Account.ToppedUp):
            credits += event.amount
        elif isinstance(event, Account.Adjusted):
            credits += event.amount
        elif isinstance(event, Account.Reserved):
            pending += event.amount
        elif isinstance(event, Account.ChargePosted):
            pending -= event.reserved_amount
            posted += event.amount
        elif isinstance(event, Account.ReservationReleased):
            pending -= event.amount
        elif isinstance(event, Account.ChargeCorrected):
            posted += event.amount
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
