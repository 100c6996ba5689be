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


class InvalidPiiPolicy(DomainError):
    """The request's `pii_policy` (or a project's default PII policy) is malformed."""

    code = "invalid_pii_policy"


class GuardrailViolation(DomainError):
    """A PII guardrail refused the request (or severed its stream).

    Details carry the scanner name and the entity *types* found, never the values, so the
    error can be shown to the client, logged and recorded without leaking what it guards.
    """

    code = "guardrail_violation"

    def __init__(self, message: str, *, scanner: str, entity_types: tuple[str, ...]) -> None:
        super().__init__(message, scanner=scanner, entity_types=list(entity_types))
        self.scanner = scanner
        self.entity_types = entity_types


class PiiScreeningUnavailable(DomainError):
    """Screening was required but could not run (engine failed to load, timed out, crashed).

    The gateway fails closed on this: the request is refused, never sent unscreened."""

    code = "pii_screening_unavailable"


class ModelDoesNotSupportDocuments(DomainError):
    """A document (PDF) was sent to a model that cannot read one. Raised instead of dropping
    the document silently; `details["alternatives"]` lists document-capable models."""

    code = "model_does_not_support_documents"


# --- routing and compliance (added by the routing work; existing classes unchanged) ---------


class ModelNotFound(DomainError):
    """No model, alias or shorthand of that name. details: model."""

    code = "model_not_found"


class ModelNotCompliant(DomainError):
    """The named model is outside the effective compliance tier.
    details: model, tier, alternatives (list of compliant model names, most similar first)."""

    code = "model_not_compliant"


class ModelCapabilityMissing(DomainError):
    """The named model cannot do what the request needs (embeddings, vision, tools, …).
    details: model, missing (list), alternatives (list)."""

    code = "model_capability_missing"

    @property
    def missing(self) -> list[str]:
        value = self.details.get("missing")
        return [str(item) for item in value] if isinstance(value, list | tuple) else []

    @property
    def alternatives(self) -> list[str]:
        value = self.details.get("alternatives")
        return [str(item) for item in value] if isinstance(value, list | tuple) else []


class ComplianceTierNotInPlan(InvalidCommand):
    """The Free plan is unrestricted-tier only. details: tier, plan.

    Raised by the one plan <-> tier rule (domain/plans.check_plan_allows_tier) on every
    path: an admin's project create, tier change or plan change, and a request's tier or
    routing preference. An InvalidCommand by kind (the command cannot be carried out), with
    its own code so the client sees one status (403: the plan does not entitle it)."""

    code = "compliance_tier_not_in_plan"


class UnknownComplianceTier(DomainError):
    """A compliance tier name nobody defined. details: tier, allowed."""

    code = "invalid_compliance_tier"


class NoRouteAvailable(DomainError):
    """Every compliant model/endpoint is unavailable (breakers open, none configured).
    details: tier, model. Never answered by leaving the tier."""

    code = "no_route_available"
