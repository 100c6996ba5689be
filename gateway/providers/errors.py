"""Mapping of provider HTTP failures to the status and OpenAI error envelope the client sees.

One table for every adapter, so an SDK user gets the same contract whatever the provider:
auth → 401, permission → 403 (with a hint), not found → 404, rate/usage limits → 429 with
retry_after, overloaded/5xx → 502/503, timeouts → 504. The decision is by HTTP status only:
a "429" appearing inside a 400 body is not a rate limit.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

import httpx

from gateway.providers.base import UpstreamError

DEFAULT_RETRY_AFTER_SECONDS = 1.0
MAX_MESSAGE_CHARS = 500


def _retry_after(headers: Mapping[str, str]) -> tuple[float | None, str | None]:
    lowered = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in lowered:
        try:
            return max(0.0, float(lowered["retry-after-ms"]) / 1000.0), "provider_header"
        except ValueError:
            pass
    if "retry-after" in lowered:
        raw = lowered["retry-after"].strip()
        try:
            return max(0.0, float(raw)), "provider_header"
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(raw) if raw else None
            if parsed is not None:
                return max(0.0, parsed.timestamp() - time.time()), "provider_header"
    return None, None


def extract_message(payload: Any, fallback: str) -> tuple[str, str | None]:
    """Pull (message, provider code) out of the common error shapes."""
    message, code = fallback, None
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict):
            message = str(error.get("message") or payload.get("message") or fallback)
            raw_code = error.get("code") or error.get("type") or error.get("status")
            code = str(raw_code) if raw_code is not None else None
        elif isinstance(error, str):
            message = error
        if "message" in payload and isinstance(payload["message"], str) and message == fallback:
            message = payload["message"]
    return message[:MAX_MESSAGE_CHARS], code


def error_from_status(
    provider: str,
    status: int,
    headers: Mapping[str, str],
    payload: Any,
    *,
    text: str = "",
) -> UpstreamError:
    """The mapped error; its message quotes the provider, so it is flagged provider_text."""
    message, provider_code = extract_message(payload, text[:MAX_MESSAGE_CHARS] or f"HTTP {status}")
    error = _mapped_error(provider, status, headers, message, provider_code)
    error.provider_text = True
    return error


def _mapped_error(
    provider: str, status: int, headers: Mapping[str, str], message: str, provider_code: str | None
) -> UpstreamError:
    """The module's one status table: the provider's HTTP status → the client's error."""
    prefix = f"{provider}: "
    if status == 400 or status == 422 or status == 413:
        return UpstreamError(
            status=400,
            code=provider_code or "upstream_bad_request",
            message=prefix + message,
            error_type="invalid_request_error",
            provider=provider,
        )
    if status == 401 or status == 498:  # 498: Cohere's "invalid token"
        return UpstreamError(
            status=401,
            code="upstream_authentication_failed",
            message=prefix + "the provider rejected the gateway's credentials",
            error_type="authentication_error",
            provider=provider,
            hint=f"check LEDGERGATE_{provider.upper()}_API_KEY",
        )
    if status == 403:
        return UpstreamError(
            status=403,
            code=f"{provider}_access_denied",
            message=prefix + message,
            error_type="permission_error",
            provider=provider,
            hint="the provider account is not allowed to use this model or region",
        )
    if status == 404:
        return UpstreamError(
            status=404,
            code="model_not_found"
            if provider_code in (None, "model_not_found", "NOT_FOUND")
            else provider_code,
            message=prefix + message,
            error_type="invalid_request_error",
            provider=provider,
            param="model",
        )
    if status in (408, 504):
        return UpstreamError(
            status=504,
            code="upstream_timeout",
            message=prefix + message,
            provider=provider,
            retryable=True,
        )
    if status == 429 or status == 402:
        # 402 is how some providers say "usage limit / out of credit": a 429 to the client,
        # like OpenAI's own insufficient_quota.
        seconds, source = _retry_after(headers)
        if seconds is None:
            seconds, source = DEFAULT_RETRY_AFTER_SECONDS, "gateway_default"
        return UpstreamError(
            status=429,
            code="insufficient_quota"
            if status == 402 or provider_code == "insufficient_quota"
            else "rate_limit_exceeded",
            message=prefix + message,
            error_type="rate_limit_error",
            provider=provider,
            retry_after_seconds=seconds,
            retry_after_source=source,
            retryable=True,
        )
    if status in (503, 529):
        seconds, source = _retry_after(headers)
        return UpstreamError(
            status=503,
            code="upstream_overloaded",
            message=prefix + message,
            provider=provider,
            retry_after_seconds=seconds,
            retry_after_source=source,
            retryable=True,
        )
    return UpstreamError(
        status=502,
        code="upstream_error",
        message=prefix + f"HTTP {status}: {message}",
        provider=provider,
        retryable=status >= 500,
    )


def error_from_response(provider: str, response: httpx.Response) -> UpstreamError:
    text = response.text if response.content else ""
    try:
        payload: Any = response.json()
    except ValueError:
        payload = None
    return error_from_status(provider, response.status_code, response.headers, payload, text=text)


UPSTREAM_BUSY_RETRY_AFTER_S = 1.0


def error_from_transport(provider: str, error: Exception) -> UpstreamError:
    if isinstance(error, httpx.PoolTimeout):
        # Our own connection pool had no free connection within the pool timeout: the
        # provider was never contacted, so this is the gateway being busy, not an outage.
        return UpstreamError(
            status=503,
            code="gateway_busy",
            message="the gateway has no free upstream connection right now; retry shortly",
            provider=provider,
            retry_after_seconds=UPSTREAM_BUSY_RETRY_AFTER_S,
            retry_after_source="gateway_default",
            local=True,
        )
    if isinstance(error, httpx.TimeoutException):
        return UpstreamError(
            status=504,
            code="upstream_timeout",
            message=f"{provider}: the provider did not answer in time ({type(error).__name__})",
            provider=provider,
            retryable=True,
        )
    return UpstreamError(
        status=502,
        code="upstream_connection_error",
        message=f"{provider}: connection to the provider failed ({type(error).__name__})",
        provider=provider,
        retryable=True,
    )


def malformed(provider: str, what: str) -> UpstreamError:
    return UpstreamError(
        status=502,
        code="upstream_malformed_response",
        message=f"{provider}: malformed response from the provider: {what}"[:MAX_MESSAGE_CHARS],
        provider=provider,
    )
