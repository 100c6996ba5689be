"""Turn a reconciliation report into the command that records it in the event log."""

from __future__ import annotations

from pathlib import PurePath
from uuid import UUID

from domain.commands import RecordReconciliation
from reconciliation.reconcile import ReconciliationReport


def record_command(
    report: ReconciliationReport, *, adjust_project_id: UUID | None = None
) -> RecordReconciliation:
    """The report's totals and lines, money as exact strings in the lines. Only the invoice
    file's base name is kept (a path can name people or machines); its digest is the
    identity."""
    return RecordReconciliation(
        provider=report.provider,
        month=report.month,
        currency=report.currency,
        per_day=report.per_day,
        tolerance=report.tolerance,
        relative_tolerance=report.relative_tolerance,
        ledger_cost=report.totals.ledger_cost,
        invoice_cost=report.totals.invoice_cost,
        difference=report.totals.difference,
        status=report.totals.status,
        lines_by_status=tuple(sorted(report.totals.lines_by_status.items())),
        lines=tuple(
            (
                line.day.isoformat() if line.day else "",
                line.model,
                format(line.ledger_cost, "f"),
                format(line.invoice_cost, "f"),
                format(line.difference, "f"),
                line.status,
            )
            for line in report.lines
        ),
        ledger_charges=report.ledger_charges,
        ledger_position=report.ledger_position,
        invoice_sha256=report.invoice_sha256,
        invoice_source=PurePath(report.invoice_source).name,
        invoice_layout=report.invoice_layout,
        adjust_project_id=adjust_project_id,
    )
