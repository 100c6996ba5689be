"""The error contract SDK users rely on, per provider quirk."""

from __future__ import annotations

import pytest

from gateway.providers.bedrock import bedrock_error
from gateway.providers.errors import error_from_status
from tests.fakes.fixtures import start_fake
from tests.unit.providers.helpers import chat_error


def test_a_stray_429_inside_a_400_body_is_not_a_rate_limit():
    error = error_from_status(
        "openai",
        400,
        {},
        {"error": {"message": "max_tokens 429 is too large", "code": "invalid_value"}},
    )
    assert error.status == 400
    assert error.retry_after_seconds is None


def test_retry_after_ms_wins_over_retry_after_and_is_in_seconds():
    error = error_from_status("openai", 429, {"retry-after-ms": "1500", "retry-after": "9"}, None)
    assert error.retry_after_seconds == 1.5
    assert error.retry_after_source == "provider_header"


def test_bedrock_access_denied_is_403_with_a_hint_and_bedrock_code():
    error = bedrock_error(
        "bedrock",
        403,
        {"x-amzn-errortype": "AccessDeniedException:http://x"},
        {"message": "You don't have access to the model"},
    )
    assert (error.status, error.code) == (403, "bedrock_access_denied")
    assert "Bedrock console" in (error.hint or "")


def test_bedrock_bad_credentials_are_401_even_though_aws_sends_403():
    error = bedrock_error(
        "bedrock",
        403,
        {"x-amzn-errortype": "UnrecognizedClientException"},
        {"message": "The security token included in the request is invalid."},
    )
    assert error.status == 401


def test_bedrock_service_quota_exceeded_is_a_429_even_though_aws_sends_400():
    error = bedrock_error(
        "bedrock", 400, {"x-amzn-errortype": "ServiceQuotaExceededException"}, {"message": "quota"}
    )
    assert error.status == 429
    assert error.retry_after_source == "gateway_default"


def test_bedrock_model_timeout_is_a_504():
    assert (
        bedrock_error(
            "bedrock", 408, {"x-amzn-errortype": "ModelTimeoutException"}, {"message": "t"}
        ).status
        == 504
    )


@pytest.mark.parametrize("provider", ["anthropic", "bedrock", "google", "openai"])
async def test_a_permission_error_is_403_with_a_hint(provider):
    fake = start_fake(provider)
    try:
        fake.script(error_status=403)
        error = await chat_error(provider, fake)
    finally:
        fake.stop()
    assert error.status == 403
    assert error.code == f"{provider}_access_denied"
    assert error.hint


async def test_anthropic_overloaded_529_is_a_503():
    fake = start_fake("anthropic")
    try:
        fake.script(error_status=529)
        error = await chat_error("anthropic", fake)
    finally:
        fake.stop()
    assert error.status == 503


def test_a_402_usage_limit_is_a_429_insufficient_quota():
    error = error_from_status("moonshot", 402, {}, {"error": {"message": "out of credit"}})
    assert (error.status, error.code) == (429, "insufficient_quota")


async def test_cohere_invalid_token_498_is_a_401_and_the_cohere_sdk_agrees_on_the_fake():
    import cohere
    from cohere.errors import InvalidTokenError

    fake = start_fake("cohere")
    try:
        fake.script(error_status=498, error_body={"message": "invalid api token"})
        with pytest.raises(InvalidTokenError):
            cohere.ClientV2(api_key="k", base_url=fake.base_url).chat(
                model="command-a-03-2025",
                messages=[{"role": "user", "content": "hi"}],
                request_options={"max_retries": 0},
            )
        fake.script(error_status=498, error_body={"message": "invalid api token"})
        error = await chat_error("cohere", fake)
    finally:
        fake.stop()
    assert error.status == 401
    assert error.code == "upstream_authentication_failed"
