"""Expected failures of the domain. They know nothing of HTTP: the gateway maps each `code`
to a status in one table (gateway/errors.py)."""

from __future__ import annotations


class DomainError(Exception):
    code: str = "domain_error"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidAmount(DomainError):
    code = "invalid_amount"


class CurrencyMismatch(DomainError):
    code = "currency_mismatch"


class InsufficientFunds(DomainError):
    code = "insufficient_balance"


class BudgetExceeded(DomainError):
    code = "budget_exceeded"


class QuotaExceeded(DomainError):
    code = "quota_exceeded"


class UnknownProject(DomainError):
    code = "project_not_found"


class UnknownKey(DomainError):
    code = "invalid_api_key"


class KeyRevoked(DomainError):
    code = "invalid_api_key"


class IllegalTransition(DomainError):
    code = "illegal_transition"


class ReservationNotFound(DomainError):
    code = "reservation_not_found"


class DuplicateRequest(DomainError):
    code = "duplicate_request"


class PriceNotFound(DomainError):
    code = "price_not_found"


class FxRateNotFound(DomainError):
    code = "fx_rate_not_found"


class InvalidCommand(DomainError):
    code = "invalid_request"


class ModelDoesNotSupportDocuments(DomainError):
    """A document (PDF) was sent to a model that cannot read one. Raised instead of dropping
    the document silently; `details["alternatives"]` lists document-capable models."""

    code = "model_does_not_support_documents"
