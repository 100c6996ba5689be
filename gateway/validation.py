"""Validation of the OpenAI-shaped request bodies: a clear 400 naming the field, never a
500. OpenAI answers 400 (not 422) for invalid bodies and the SDKs map that to
BadRequestError, so the gateway does the same."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import GatewayError

BODY_BYTES_MAX = 32 * 1024 * 1024
MESSAGES_MAX = 10_000
MODEL_NAME_CHARS_MAX = 200
USER_ID_CHARS_MAX = 256
MAX_TOKENS_MAX = 1_000_000
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def parse_json_body(raw: bytes) -> dict[str, Any]:
    if len(raw) > BODY_BYTES_MAX:
        raise GatewayError("payload_too_large", f"request body exceeds {BODY_BYTES_MAX} bytes")
    if not raw.strip():
        raise GatewayError("invalid_json", "the request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise GatewayError(
            "invalid_json", f"the request body is not valid JSON ({error.args[0][:80]})"
        ) from None
    if not isinstance(body, dict):
        raise GatewayError("invalid_json", "the request body must be a JSON object")
    return body


def _invalid(message: str, param: str) -> GatewayError:
    return GatewayError("invalid_request", message, param=param)


def _check_number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    if name in body and body[name] is not None:
        value = body[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (low <= value <= high)
        ):
            raise _invalid(f"'{name}' must be a number between {low} and {high}", name)


def _check_int(body: dict[str, Any], name: str, low: int, high: int) -> None:
    if name in body and body[name] is not None:
        value = body[name]
        if isinstance(value, bool) or not isinstance(value, int) or not (low <= value <= high):
            raise _invalid(f"'{name}' must be an integer between {low} and {high}", name)


def validate_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _invalid("'model' is required and must be a non-empty string", "model")
    if len(model) > MODEL_NAME_CHARS_MAX:
        raise _invalid(f"'model' is longer than {MODEL_NAME_CHARS_MAX} characters", "model")
    return model.strip()


def validate_chat_body(body: dict[str, Any]) -> None:
    validate_model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("'messages' is required and must be a non-empty array", "messages")
    if len(messages) > MESSAGES_MAX:
        raise _invalid(f"'messages' has more than {MESSAGES_MAX} entries", "messages")
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _invalid(f"{param} must be an object", param)
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise _invalid(
                f"{param}.role must be one of {', '.join(sorted(ROLES))}", f"{param}.role"
            )
        content = message.get("content")
        if content is None:
            if role != "assistant" or not (
                message.get("tool_calls") or message.get("function_call")
            ):
                raise _invalid(f"{param}.content is required", f"{param}.content")
        elif not isinstance(content, str | list):
            raise _invalid(
                f"{param}.content must be a string or an array of parts", f"{param}.content"
            )
        elif isinstance(content, list):
            for part_index, part in enumerate(content):
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise _invalid(
                        f"{param}.content[{part_index}] must be an object with a 'type'",
                        f"{param}.content[{part_index}]",
                    )
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise _invalid(
                f"{param}.tool_call_id is required for tool messages", f"{param}.tool_call_id"
            )
    if "stream" in body and not isinstance(body["stream"], bool):
        raise _invalid("'stream' must be a boolean", "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _invalid("'stream_options' must be an object", "stream_options")
    _check_int(body, "max_tokens", 1, MAX_TOKENS_MAX)
    _check_int(body, "max_completion_tokens", 1, MAX_TOKENS_MAX)
    _check_int(body, "n", 1, 128)
    _check_number(body, "temperature", 0, 2)
    _check_number(body, "top_p", 0, 1)
    _check_number(body, "presence_penalty", -2, 2)
    _check_number(body, "frequency_penalty", -2, 2)
    user = body.get("user")
    if user is not None and (not isinstance(user, str) or len(user) > USER_ID_CHARS_MAX):
        raise _invalid(f"'user' must be a string of at most {USER_ID_CHARS_MAX} characters", "user")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise _invalid("'tools' must be an array", "tools")


def max_output_tokens(body: dict[str, Any], default: int) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return default


def output_tokens_allowance(body: dict[str, Any], default: int) -> int:
    """What a request can produce in all: the per-choice allowance times `n` choices (each
    choice is billed its own output). Reserved at admission and the bound of what an upstream
    may report (domain/usage.py)."""
    choices = body.get("n")
    if not isinstance(choices, int) or isinstance(choices, bool) or choices < 1:
        choices = 1
    return max_output_tokens(body, default) * choices


def wants_usage_in_stream(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))
