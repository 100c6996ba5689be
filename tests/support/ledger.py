"""Independent checks of the ledger straight from the event store (not from projections)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

from domain.account import Account
from domain.application import LedgerApplication
from domain.ids import account_id


@dataclass
class Replay:
    credits: Decimal
    posted: Decimal
    pending: Decimal
    lowest_available: Decimal
    charges: dict[str, Decimal]  # request id -> amount posted
    charge_events: int
    releases: int

    @property
    def available(self) -> Decimal:
        return self.credits - self.posted - self.pending


def replay_account(app: LedgerApplication, project_id: UUID) -> Replay:
    credits = posted = pending = Decimal(0)
    lowest: Decimal | None = None
    charges: dict[str, Decimal] = {}
    charge_events = releases = 0
    for event in app.events.get(account_id(project_id)):
        if isinstance(event, Account.ToppedUp | Account.Adjusted):
            credits += event.amount
        elif isinstance(event, Account.Reserved):
            pending += event.amount
        elif isinstance(event, Account.ChargePosted):
            pending -= event.reserved_amount
            posted += event.amount
            charges[event.request_id] = charges.get(event.request_id, Decimal(0)) + event.amount
            charge_events += 1
        elif isinstance(event, Account.ReservationReleased):
            pending -= event.amount
            releases += 1
        available = credits - posted - pending
        lowest = available if lowest is None else min(lowest, available)
    return Replay(credits, posted, pending, lowest or Decimal(0), charges, charge_events, releases)
