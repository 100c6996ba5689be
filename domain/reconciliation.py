"""A provider reconciliation, recorded once as an immutable fact.

Finance compares what the ledger says a provider cost in a month with the provider's
invoice (see reconciliation/reconcile.py, which does the arithmetic off the write path).
The outcome is recorded here so auditors can later ask "what did we know, when, against
which invoice file and which ledger position?". A correction that follows from it is a new
Account.Adjusted event on a project's account (same transaction), never an edit of charges.

The aggregate id derives from what was compared (provider, month, invoice digest, ledger
position, tolerance, adjustment target), so re-running the same reconciliation is
"already recorded", not a second record or a second adjustment.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.errors import InvalidCommand
from domain.ids import NAMESPACE

STATUSES = ("match", "over", "under", "missing_in_ledger", "missing_in_invoice")
LINES_MAX = 10_000  # a month × models × days; beyond that the record is not a report any more
TEXT_MAX = 200


def reconciliation_id(
    *,
    provider: str,
    month: str,
    invoice_sha256: str,
    ledger_position: int | None,
    tolerance: Decimal,
    relative_tolerance: Decimal,
    adjust_project_id: UUID | None,
) -> UUID:
    return uuid5(
        NAMESPACE,
        f"reconciliation:{provider}:{month}:{invoice_sha256}:{ledger_position}:"
        f"{format(tolerance, 'f')}:{format(relative_tolerance, 'f')}:{adjust_project_id}",
    )


class ProviderReconciliation(Aggregate):
    class ReconciliationRecorded(Aggregate.Created):
        provider: str
        month: str  # YYYY-MM, UTC
        currency: str  # of the invoice and of the ledger's provider costs compared
        per_day: bool
        tolerance: Decimal
        relative_tolerance: Decimal
        ledger_cost: Decimal
        invoice_cost: Decimal
        difference: Decimal  # ledger_cost - invoice_cost
        status: str  # of the totals
        lines_by_status: tuple[tuple[str, int], ...]
        # (day or "", model, ledger_cost, invoice_cost, difference, status); money as exact
        # strings so the stored JSON is the same whatever the transcoder does with Decimal.
        lines: tuple[tuple[str, str, str, str, str, str], ...]
        ledger_charges: int
        ledger_position: int | None
        invoice_sha256: str
        invoice_source: str  # the file's base name, for people; the digest is the identity
        invoice_layout: str
        adjustment_project_id: UUID | None
        adjustment_amount: Decimal | None  # signed, in `currency`; None when not adjusted
        recorded_at: datetime

    @classmethod
    def record(
        cls,
        *,
        reconciliation_id: UUID,
        provider: str,
        month: str,
        currency: str,
        per_day: bool,
        tolerance: Decimal,
        relative_tolerance: Decimal,
        ledger_cost: Decimal,
        invoice_cost: Decimal,
        difference: Decimal,
        status: str,
        lines_by_status: tuple[tuple[str, int], ...],
        lines: tuple[tuple[str, str, str, str, str, str], ...],
        ledger_charges: int,
        ledger_position: int | None,
        invoice_sha256: str,
        invoice_source: str,
        invoice_layout: str,
        adjustment_project_id: UUID | None,
        adjustment_amount: Decimal | None,
        now: datetime,
    ) -> ProviderReconciliation:
        if status not in STATUSES:
            raise InvalidCommand(f"unknown reconciliation status {status[:32]!r}")
        if any(line[5] not in STATUSES for line in lines):
            raise InvalidCommand("a reconciliation line has an unknown status")
        if len(lines) > LINES_MAX:
            raise InvalidCommand(f"a reconciliation records at most {LINES_MAX} lines")
        if ledger_cost - invoice_cost != difference:
            raise InvalidCommand("difference must be ledger_cost - invoice_cost")
        if len(invoice_sha256) != 64:
            raise InvalidCommand("invoice_sha256 must be a SHA-256 hex digest")
        return cls._create(
            cls.ReconciliationRecorded,
            id=reconciliation_id,
            provider=provider[:TEXT_MAX],
            month=month,
            currency=currency,
            per_day=per_day,
            tolerance=tolerance,
            relative_tolerance=relative_tolerance,
            ledger_cost=ledger_cost,
            invoice_cost=invoice_cost,
            difference=difference,
            status=status,
            lines_by_status=lines_by_status,
            lines=lines,
            ledger_charges=ledger_charges,
            ledger_position=ledger_position,
            invoice_sha256=invoice_sha256,
            invoice_source=invoice_source[:TEXT_MAX],
            invoice_layout=invoice_layout[:TEXT_MAX],
            adjustment_project_id=adjustment_project_id,
            adjustment_amount=adjustment_amount,
            recorded_at=now,
        )

    def __init__(self, provider: str, month: str, currency: str, **facts: object) -> None:
        # The record is the event; the aggregate only needs to exist so the id is taken.
        self.provider = provider
        self.month = month
        self.currency = currency
        self.status = facts.get("status")
        self.adjustment_amount = facts.get("adjustment_amount")
