"""Balances per project: credits, posted, pending, available — from Account events."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from domain.account import Account
from projections.base import View
from projections.db import Tx, as_decimal, iso

ZERO = Decimal(0)


class BalancesView(View):
    name = "balances"
    tables = ("lg_balances",)
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
            tx.execute(
                "INSERT INTO lg_balances (account_id, project_id, currency, credits, posted, pending, available, "
                "updated_at, position) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (account_id) DO NOTHING",
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
        row = tx.execute(
            "SELECT credits, posted, pending FROM lg_balances WHERE account_id = %s", (account_id,)
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
            "UPDATE lg_balances SET credits = %s, posted = %s, pending = %s, available = %s, updated_at = %s, "
            "position = %s WHERE account_id = %s",
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
