"""One table from error codes to HTTP status, and the OpenAI error envelope.

Domain errors know nothing of HTTP; this is the only place that decides what status a
client sees for them. Before streaming, errors are real HTTP statuses with
{"error": {"message", "type", "code", "param", ...}}; after the first chunk they become an
SSE frame with an `error` key (gateway/chat.py).
"""

from __future__ import annotations

from typing import Any

from domain.errors import DomainError
from gateway.providers.base import UpstreamError
from gateway.responses import JsonResponse

# code -> (HTTP status, OpenAI error type)
STATUS_BY_CODE: dict[str, tuple[int, str]] = {
    "invalid_request": (400, "invalid_request_error"),
    "invalid_json": (400, "invalid_request_error"),
    "invalid_amount": (400, "invalid_request_error"),
    "currency_mismatch": (400, "invalid_request_error"),
    "missing_user_id": (400, "invalid_request_error"),
    "invalid_actor_token": (401, "authentication_error"),
    "missing_api_key": (401, "authentication_error"),
    "invalid_api_key": (401, "authentication_error"),
    "invalid_admin_token": (401, "authentication_error"),
    "admin_api_disabled": (403, "permission_error"),
    "insufficient_balance": (402, "insufficient_quota"),
    "budget_exceeded": (402, "insufficient_quota"),
    "quota_exceeded": (429, "rate_limit_error"),
    "project_not_found": (404, "invalid_request_error"),
    "request_not_found": (404, "invalid_request_error"),
    "reconciliation_not_found": (404, "invalid_request_error"),
    "model_not_found": (404, "invalid_request_error"),
    "price_not_found": (404, "invalid_request_error"),
    # A configuration gap, not an outage: retrying cannot help until an operator loads rates.
    "fx_rate_not_found": (503, "configuration_error"),
    "model_not_compliant": (400, "invalid_request_error"),
    "model_capability_missing": (400, "invalid_request_error"),
    "invalid_compliance_tier": (400, "invalid_request_error"),
    "compliance_tier_not_in_plan": (403, "permission_error"),
    "no_route_available": (503, "api_error"),
    "gateway_busy": (503, "api_error"),
    "project_concurrency_exceeded": (429, "rate_limit_error"),
    "model_does_not_support_documents": (400, "invalid_request_error"),
    "guardrail_violation": (400, "invalid_request_error"),
    "invalid_pii_policy": (400, "invalid_request_error"),
    "pii_screening_unavailable": (503, "api_error"),
    "illegal_transition": (409, "invalid_request_error"),
    "reservation_not_found": (409, "invalid_request_error"),
    "duplicate_request": (409, "invalid_request_error"),
    "invalid_cursor": (400, "invalid_request_error"),
    "unsupported_endpoint": (404, "invalid_request_error"),
    "payload_too_large": (413, "invalid_request_error"),
    "min_position_not_reached": (503, "api_error"),
    "internal_error": (500, "api_error"),
}


# Statuses the openai SDKs retry by default (408, 409, 429, 5xx). A code listed here is
# answered with one of them but is not transient: the response says `x-should-retry: false`
# (which the SDKs honour) so a client does not hammer a gap only an operator can close.
NON_TRANSIENT_CODES: frozenset[str] = frozenset(
    {
        "fx_rate_not_found",
        "quota_exceeded",  # resets at the next month, not in seconds
        "duplicate_request",
        "illegal_transition",
        "reservation_not_found",
        "secret_key_missing",
        "byok_key_unreadable",
    }
)
# 409 is retried by the SDKs too, but every 409 the gateway answers (a duplicate, a closed
# trace, an illegal transition) is a fact, not a race: those all say x-should-retry: false.
TRANSIENT_STATUSES = frozenset({408, 429})


def is_transient(error: GatewayError) -> bool:
    """May a retry of the same request succeed without anyone changing anything? Every
    other error status (400, 401, 402, 403, 404, …) is non-transient by nature."""
    if error.code in NON_TRANSIENT_CODES:
        return False
    return error.status in TRANSIENT_STATUSES or error.status >= 500


class GatewayError(Exception):
    """An error the gateway itself raises (auth, validation, routing)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        error_type: str | None = None,
        param: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        default_status, default_type = STATUS_BY_CODE.get(code, (400, "invalid_request_error"))
        self.code = code
        self.message = message
        self.status = status or default_status
        self.error_type = error_type or default_type
        self.param = param
        self.extra = extra or {}
        self.headers = headers or {}
        # What the ledger records. Defaults to the message, which the gateway writes itself;
        # a provider's free text is replaced (it may echo the prompt, and events never carry
        # prompt text).
        self.ledger_message = message


def from_domain(error: DomainError) -> GatewayError:
    status, error_type = STATUS_BY_CODE.get(error.code, (400, "invalid_request_error"))
    extra = {
        k: v
        for k, v in error.details.items()
        if isinstance(v, str | int | float | bool | list | dict | type(None))
    }
    headers: dict[str, str] = {}
    if "retry_after_seconds" in extra:
        headers["Retry-After"] = str(int(float(str(extra["retry_after_seconds"]))))
    # A domain error may name the offending field (details["param"]): it belongs in the
    # envelope's `param`, not among the extra keys (where `param: null` would shadow it).
    param = extra.pop("param", None)
    return GatewayError(
        error.code,
        error.message,
        status=status,
        error_type=error_type,
        param=param if isinstance(param, str) else None,
        extra=extra,
        headers=headers,
    )


def from_upstream(error: UpstreamError) -> GatewayError:
    extra: dict[str, Any] = {"provider": error.provider}
    headers: dict[str, str] = {}
    if error.retry_after_seconds is not None:
        extra["retry_after_seconds"] = round(error.retry_after_seconds, 3)
        extra["retry_after_source"] = error.retry_after_source
        headers["Retry-After"] = str(max(1, int(round(error.retry_after_seconds))))
    if error.hint:
        extra["hint"] = error.hint
    gateway_error = GatewayError(
        error.code,
        error.message,
        status=error.status,
        error_type=error.error_type,
        param=error.param,
        extra=extra,
        headers=headers,
    )
    if error.provider_text:
        gateway_error.ledger_message = (
            f"{error.provider} failed: {error.code} (HTTP {error.status} to the client); "
            "the provider's own message is not recorded"
        )
    return gateway_error


def as_gateway_error(error: BaseException) -> GatewayError:
    if isinstance(error, GatewayError):
        return error
    if isinstance(error, DomainError):
        return from_domain(error)
    if isinstance(error, UpstreamError):
        return from_upstream(error)
    return GatewayError("internal_error", "the gateway failed to handle this request", status=500)


def envelope(error: GatewayError) -> dict[str, Any]:
    body: dict[str, Any] = {
        "message": error.message,
        "type": error.error_type,
        "code": error.code,
        "param": error.param,
    }
    for key, value in error.extra.items():
        body.setdefault(key, value)
    return {"error": body}


def error_response(
    error: GatewayError, request_id: str, headers: dict[str, str] | None = None
) -> JsonResponse:
    merged = {"X-Request-Id": request_id, **error.headers, **(headers or {})}
    if not is_transient(error):
        merged["x-should-retry"] = "false"
    return JsonResponse(envelope(error), status_code=error.status, headers=merged)


# Temporary credentials (issue 14; domain/credentials.py).
STATUS_BY_CODE.update(
    {
        "credential_expired": (401, "authentication_error"),
        "credential_revoked": (401, "authentication_error"),
        "credential_model_not_granted": (403, "permission_error"),
        "credential_cannot_issue": (403, "permission_error"),
        "credential_actor_mismatch": (403, "permission_error"),
        "credential_budget_exceeded": (402, "insufficient_quota"),
        "credential_not_found": (404, "invalid_request_error"),
        # A configuration gap (no signing secret), not an outage.
        "credentials_disabled": (503, "configuration_error"),
    }
)
NON_TRANSIENT_CODES = NON_TRANSIENT_CODES | {"credentials_disabled"}
