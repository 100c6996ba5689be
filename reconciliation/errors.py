"""Expected failures of the reconciliation tooling.

They subclass the domain's DomainError so the gateway's single error table can map their
`code` to an HTTP status and the CLI can print them without a traceback. Messages name the
column, row or value that is wrong, never a secret or a raw PII value.
"""

from __future__ import annotations

from domain.errors import DomainError


class LedgerSchemaError(DomainError):
    """A ledger-entries frame or file does not have the columns/dtypes of the contract."""

    code = "invalid_ledger_entries"


class InvoiceFormatError(DomainError):
    """An invoice file cannot be read: missing column, bad value, unknown layout."""

    code = "invalid_invoice"


class InvalidReconciliationRequest(DomainError):
    """Bad arguments to reconcile/balance (month, provider, tolerance, export format)."""

    code = "invalid_request"
