"""One table from error codes to HTTP status, and the OpenAI error envelope.

Domain errors know nothing of HTTP; this is the only place that decides what status a
client sees for them. Before streaming, errors are real HTTP statuses with
{"error": {"message", "type", "code", "param", ...}}; after the first chunk they become an
SSE frame with an `error` key (gateway/lifecycle/stream.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from domain.errors import DomainError
from gateway.providers.base import UpstreamError
from gateway.responses import JsonResponse


@dataclass(frozen=True)
class ErrorKind:
    """What a client sees for an error code: the HTTP status, the OpenAI error `type`, and
    whether a retry may help. `retryable=False` says a retry cannot help whatever the status
    (the response carries `x-should-retry: false` even on a 429 or 5xx, which the SDKs
    honour); `True` leaves it to the status (408, 429 and 5xx are retried, the rest not)."""

    status: int
    error_type: str
    retryable: bool = True


_INVALID = "invalid_request_error"
_AUTH = "authentication_error"
_PERMISSION = "permission_error"
_QUOTA = "insufficient_quota"
_RATE = "rate_limit_error"
_API = "api_error"
_TIMEOUT = "timeout_error"

# The one table: every code the domain (domain/errors.py), the gateway (GatewayError) and
# the provider adapters (UpstreamError) answer. tests/unit/test_error_table.py walks them all.
ERRORS: dict[str, ErrorKind] = {
    # bad input
    "invalid_request": ErrorKind(400, _INVALID),
    # Reconciliation input (reconciliation/errors.py): a bad invoice or ledger-entries file.
    "invalid_invoice": ErrorKind(400, _INVALID),
    "invalid_ledger_entries": ErrorKind(400, _INVALID),
    "invalid_json": ErrorKind(400, _INVALID),
    "invalid_amount": ErrorKind(400, _INVALID),
    "currency_mismatch": ErrorKind(400, _INVALID),
    "missing_user_id": ErrorKind(400, _INVALID),
    "invalid_cursor": ErrorKind(400, _INVALID),
    "invalid_pii_policy": ErrorKind(400, _INVALID),
    "guardrail_violation": ErrorKind(400, _INVALID),
    "invalid_compliance_tier": ErrorKind(400, _INVALID),
    "model_not_compliant": ErrorKind(400, _INVALID),
    "model_capability_missing": ErrorKind(400, _INVALID),
    "model_does_not_support_documents": ErrorKind(400, _INVALID),
    "embeddings_not_supported": ErrorKind(400, _INVALID),
    "payload_too_large": ErrorKind(413, _INVALID),
    # who is asking
    "invalid_actor_token": ErrorKind(401, _AUTH),
    "missing_api_key": ErrorKind(401, _AUTH),
    "invalid_api_key": ErrorKind(401, _AUTH),
    "invalid_admin_token": ErrorKind(401, _AUTH),
    "invalid_metrics_token": ErrorKind(401, _AUTH),
    "admin_api_disabled": ErrorKind(403, _PERMISSION),
    "compliance_tier_not_in_plan": ErrorKind(403, _PERMISSION),
    # a governed trace's contract (domain/trace.py)
    "trace_model_not_allowed": ErrorKind(403, _PERMISSION),
    "trace_depth_exceeded": ErrorKind(400, _INVALID),
    "trace_parent_not_found": ErrorKind(400, _INVALID),
    # temporary credentials (domain/credentials.py)
    "credential_expired": ErrorKind(401, _AUTH),
    "credential_revoked": ErrorKind(401, _AUTH),
    "credential_model_not_granted": ErrorKind(403, _PERMISSION),
    "credential_cannot_issue": ErrorKind(403, _PERMISSION),
    "credential_actor_mismatch": ErrorKind(403, _PERMISSION),
    "credential_not_found": ErrorKind(404, _INVALID),
    "credentials_disabled": ErrorKind(503, "configuration_error", retryable=False),
    # money and quotas
    "insufficient_balance": ErrorKind(402, _QUOTA),
    "budget_exceeded": ErrorKind(402, _QUOTA),
    # named limits on the Account (domain/limits.py): a trace's, a credential's
    "limit_exceeded": ErrorKind(402, _QUOTA),
    "limit_closed": ErrorKind(409, _INVALID, retryable=False),
    "trace_budget_exceeded": ErrorKind(402, _QUOTA),
    "trace_closed": ErrorKind(409, _INVALID, retryable=False),
    "credential_budget_exceeded": ErrorKind(402, _QUOTA),
    "quota_exceeded": ErrorKind(429, _RATE, retryable=False),  # resets next month, not in seconds
    "project_concurrency_exceeded": ErrorKind(429, _RATE),
    # lookups that find nothing
    "project_not_found": ErrorKind(404, _INVALID),
    "request_not_found": ErrorKind(404, _INVALID),
    "reconciliation_not_found": ErrorKind(404, _INVALID),
    "checkpoint_not_found": ErrorKind(404, _INVALID),
    "model_not_found": ErrorKind(404, _INVALID),
    "price_not_found": ErrorKind(404, _INVALID),
    "trace_not_found": ErrorKind(404, _INVALID),
    "unsupported_endpoint": ErrorKind(404, _INVALID),
    # Every 409 the gateway answers (a duplicate, an illegal transition) is a fact, not a
    # race: the SDKs retry 409 by default, so these say x-should-retry: false.
    "illegal_transition": ErrorKind(409, _INVALID, retryable=False),
    "reservation_not_found": ErrorKind(409, _INVALID, retryable=False),
    "duplicate_request": ErrorKind(409, _INVALID, retryable=False),
    # configuration gaps, not outages: retrying cannot help until an operator acts
    "fx_rate_not_found": ErrorKind(503, "configuration_error", retryable=False),
    "secret_key_missing": ErrorKind(503, _API, retryable=False),
    "byok_key_unreadable": ErrorKind(503, _API, retryable=False),
    # the gateway cannot answer now
    "no_route_available": ErrorKind(503, _API),
    "gateway_busy": ErrorKind(503, _API),
    "pii_screening_unavailable": ErrorKind(503, _API),
    "min_position_not_reached": ErrorKind(503, _API),
    "audit_log_disabled": ErrorKind(503, _API),
    "internal_error": ErrorKind(500, _API),
    # the provider's answer, as the adapters map it (gateway/providers/errors.py); an
    # adapter may pass through the provider's own 4xx status for the same code
    "unsupported_parameter": ErrorKind(400, _INVALID),
    "invalid_value": ErrorKind(400, _INVALID),
    "invalid_image_url": ErrorKind(400, _INVALID),
    "invalid_tool_arguments": ErrorKind(400, _INVALID),
    "invalid_tool_result": ErrorKind(400, _INVALID),
    "upstream_authentication_failed": ErrorKind(401, _AUTH),
    "insufficient_quota": ErrorKind(429, _RATE),
    "upstream_error": ErrorKind(502, _API),
    "upstream_connection_error": ErrorKind(502, _API),
    "upstream_unreachable": ErrorKind(502, _API),
    "upstream_malformed_response": ErrorKind(502, _API),
    "upstream_stream_truncated": ErrorKind(502, _API),
    "ocr_failed": ErrorKind(502, _API),
    "upstream_overloaded": ErrorKind(503, _API),
    "upstream_timeout": ErrorKind(504, _TIMEOUT),
    "deadline_exceeded": ErrorKind(504, _TIMEOUT),
    # Recorded on a stream whose client went away; never sent (nobody is listening).
    "client_disconnected": ErrorKind(499, "client_error", retryable=False),
}
# An unknown code is a client mistake until it is in the table (the test fails first).
UNKNOWN_CODE = ErrorKind(400, _INVALID)
# The statuses the openai SDKs retry by default besides 5xx (409 is answered only for facts).
TRANSIENT_STATUSES = frozenset({408, 429})


def error_kind(code: str) -> ErrorKind:
    return ERRORS.get(code, UNKNOWN_CODE)


def is_transient(error: GatewayError) -> bool:
    """May a retry of the same request succeed without anyone changing anything? Every
    other error status (400, 401, 402, 403, 404, …) is non-transient by nature."""
    if not error_kind(error.code).retryable:
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
        kind = error_kind(code)
        self.code = code
        self.message = message
        # `status` / `error_type` only where the status is data of another table: an
        # unsupported endpoint's 404 or 501, Starlette's 405, a provider's answer.
        self.status = status or kind.status
        self.error_type = error_type or kind.error_type
        self.param = param
        self.extra = extra or {}
        self.headers = headers or {}
        # What the ledger records. Defaults to the message, which the gateway writes itself;
        # a provider's free text is replaced (it may echo the prompt, and events never carry
        # prompt text).
        self.ledger_message = message


def uuid_or_refuse(raw: str, code: str, message: str, param: str) -> UUID:
    """A client's id as a UUID, or the GatewayError its endpoint answers a malformed one with
    (a 400 for a bad filter, a 404 where an id names something that cannot exist)."""
    try:
        return UUID(raw)
    except ValueError:
        raise GatewayError(code, message, param=param) from None


def from_domain(error: DomainError) -> GatewayError:
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
    return GatewayError("internal_error", "the gateway failed to handle this request")


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
