"""Validation of the OpenAI-shaped request bodies: a clear 400 naming the field, never a
500. OpenAI answers 400 (not 422) for invalid bodies and the SDKs map that to
BadRequestError, so the gateway does the same."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from gateway.errors import GatewayError
from gateway.pii import checksums as checks

BODY_BYTES_MAX = 32 * 1024 * 1024
MESSAGES_MAX = 10_000
MODEL_NAME_CHARS_MAX = 200
USER_ID_CHARS_MAX = 256
MAX_TOKENS_MAX = 1_000_000
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
# Deeper bodies are refused before anything walks them: every walker below this depth is
# safe (the JSON encoders fall back to an iterative one past orjson's 255, json_bytes.py).
NESTING_DEPTH_MAX = 400
ID_CHARS_MAX = 128
# Every string of an admin body (names, references, URLs, keys) is kept in an event.
ADMIN_STRING_CHARS_MAX = 4096
# Body fields the gateway reads itself and never forwards to a provider (ARCHITECTURE.md).
GATEWAY_EXTENSION_FIELDS = ("routing_preferences", "pii_policy", "trace_id", "conversation_id")
# Ids the gateway keeps (trace, conversation, span): letters, digits and . _ : - only. This
# refuses e-mail addresses, spaces and free text outright; what still fits the syntax is
# screened for the identifiers a checksum recognises (IBAN, card, national id numbers).
ID_SYNTAX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")
# Catalog names, aliases, shorthands and variants ("eu-strict:small"), provider-style ids
# ("meta-llama/llama-3", "claude@2024"), nothing else.
MODEL_SYNTAX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@\-]{0,199}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
# NUL: PostgreSQL text and JSONB refuse it; lone surrogates: not encodable as UTF-8. Either
# one stored in an event would stop every view that tries to write it.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Ids and user ids are single-line, printable text: no control characters either.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]")
PLAIN_PARAM = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def parse_json_body(raw: bytes) -> dict[str, Any]:
    if len(raw) > BODY_BYTES_MAX:
        raise GatewayError("payload_too_large", f"request body exceeds {BODY_BYTES_MAX} bytes")
    if not raw.strip():
        raise GatewayError("invalid_json", "the request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        reason = str(error.args[0])
        if "depth limit" in reason:
            raise _invalid(
                f"the request is nested deeper than {NESTING_DEPTH_MAX} levels", "body"
            ) from None
        if "surrogate" in reason:
            # orjson refuses a lone surrogate outright; find which field holds it, so the
            # client is told where (the stdlib parser accepts them).
            _name_the_surrogate(raw)
        raise GatewayError(
            "invalid_json", f"the request body is not valid JSON ({reason[:80]})"
        ) from None
    if not isinstance(body, dict):
        raise GatewayError("invalid_json", "the request body must be a JSON object")
    return body


def _name_the_surrogate(raw: bytes) -> None:
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):
        return
    check_body_strings(parsed)


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


# --- every string, at any depth ---------------------------------------------------------------


def check_body_strings(body: Any, param: str = "", *, chars_max: int | None = None) -> None:
    """Refuse a body nested deeper than NESTING_DEPTH_MAX or holding a string (a key or a
    value, anywhere) that storage cannot hold, or (with `chars_max`) one longer than that.
    Iterative: no depth can exhaust the stack. The message names the field, never the
    rejected value."""
    stack: list[tuple[Any, int, str]] = [(body, 1, param)]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, str):
            if _UNSTORABLE.search(value):
                raise _unstorable(path)
            if chars_max is not None and len(value) > chars_max:
                raise _invalid(f"'{path}' is longer than {chars_max} characters", path or "body")
            continue
        if isinstance(value, dict | list):
            if depth > NESTING_DEPTH_MAX:
                raise _invalid(
                    f"the request is nested deeper than {NESTING_DEPTH_MAX} levels",
                    path or "body",
                )
            if isinstance(value, dict):
                for key, item in value.items():
                    child = _child_path(path, key)
                    if isinstance(key, str) and _UNSTORABLE.search(key):
                        raise _unstorable(path or "body")
                    stack.append((item, depth + 1, child))
            else:
                for index, item in enumerate(value):
                    stack.append((item, depth + 1, f"{path}[{index}]"))


def _child_path(path: str, key: Any) -> str:
    # A key the client chose is named only when it is a plain identifier: a param must not
    # carry (and so echo) arbitrary client text.
    name = key if isinstance(key, str) and PLAIN_PARAM.fullmatch(key) else "*"
    return f"{path}.{name}" if path else name


def _unstorable(param: str) -> GatewayError:
    return _invalid(
        f"'{param}' contains a NUL character or a lone surrogate, which is not accepted",
        param,
    )


def has_unstorable_text(value: str) -> bool:
    """NUL, a control character or a lone surrogate: never part of a path, a query or an id."""
    return _CONTROL.search(value) is not None


def check_text(value: str, param: str, chars_max: int) -> str:
    """A single-line text the gateway keeps (a user id, a header value): bounded, printable."""
    if len(value) > chars_max:
        raise _invalid(f"'{param}' is longer than {chars_max} characters", param)
    if _CONTROL.search(value):
        raise _invalid(f"'{param}' contains control characters or lone surrogates", param)
    return value


def check_id(value: Any, param: str) -> str:
    """A trace, conversation or span id: strict syntax, and not personal data."""
    if not isinstance(value, str) or not ID_SYNTAX.fullmatch(value):
        raise _invalid(
            f"'{param}' must be 1 to {ID_CHARS_MAX} letters, digits or . _ : - "
            "(starting with a letter or digit)",
            param,
        )
    if looks_like_personal_data(value):
        raise _invalid(f"'{param}' looks like personal data; use an opaque id", param)
    return value


def looks_like_personal_data(value: str) -> bool:
    """The identifiers a checksum confirms (IBAN, payment card, Swedish, German, Italian,
    Spanish and French national ids), or an e-mail address, in a short kept value — a model
    name or an id. Free text (prompts) is the PII engine's job, not this."""
    if _EMAIL.search(value):
        return True
    parts = [value, *re.split(r"[._:/@\-]+", value)]
    compact = re.sub(r"[._:/@\-]", "", value)
    parts.append(compact)
    for part in parts:
        if not part:
            continue
        if checks.iban_valid(part):
            return True
        if part.isdigit() and 13 <= len(part) <= 19 and checks.luhn_valid(part):
            return True
        if (
            checks.swedish_id_kind(part) is not None
            or checks.de_tax_id_valid(part)
            or checks.it_fiscal_code_valid(part)
            or checks.es_dni_valid(part)
            or checks.es_nie_valid(part)
            or checks.fr_nir_valid(part)
        ):
            return True
    return False


# Model fields that passed validate_model, mapped to the name it returned. Every request is
# checked twice (its recorded name, then the body) and nearly all name a handful of models: the
# personal-data checks were 3% of a serving process's event-loop time. Only names that passed
# are kept, and a passing name is recorded in plaintext in the request's own events anyway;
# the map is emptied when full, so a tenant sending random names costs memory for no one.
_VALID_MODEL_NAMES: dict[str, str] = {}
VALID_MODEL_NAMES_MAX = 4096


def validate_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if type(model) is str:
        known = _VALID_MODEL_NAMES.get(model)
        if known is not None:
            return known
    name = _validated_model(model)  # raises unless `model` is a valid name (a str)
    assert isinstance(model, str)
    if len(_VALID_MODEL_NAMES) >= VALID_MODEL_NAMES_MAX:
        _VALID_MODEL_NAMES.clear()
    _VALID_MODEL_NAMES[model] = name
    return name


def _validated_model(model: Any) -> str:
    if not isinstance(model, str) or not model.strip():
        raise _invalid("'model' is required and must be a non-empty string", "model")
    if len(model) > MODEL_NAME_CHARS_MAX:
        raise _invalid(f"'model' is longer than {MODEL_NAME_CHARS_MAX} characters", "model")
    name = model.strip()
    if not MODEL_SYNTAX.fullmatch(name):
        raise _invalid(
            "'model' must be a model name: letters, digits and . _ : / @ - only", "model"
        )
    if looks_like_personal_data(name):
        raise _invalid("'model' looks like personal data, not a model name", "model")
    return name


def validate_gateway_fields(body: dict[str, Any]) -> None:
    """What the gateway keeps from a body besides the prompt: the user and the ids."""
    user = body.get("user")
    if user is not None:
        if not isinstance(user, str):
            raise _invalid(
                f"'user' must be a string of at most {USER_ID_CHARS_MAX} characters", "user"
            )
        check_text(user, "user", USER_ID_CHARS_MAX)
    for name in ("trace_id", "conversation_id"):
        if body.get(name) is not None:
            check_id(body[name], name)


def storable_model(body: dict[str, Any]) -> str | None:
    """The model name to record for this request: only a valid one (a rejected value is
    never stored, not even in the rejection's own record)."""
    try:
        return validate_model(body)
    except GatewayError:
        return None


def upstream_body_of(body: dict[str, Any]) -> dict[str, Any]:
    """The body a provider may see: every gateway-only extension removed."""
    return {k: v for k, v in body.items() if k not in GATEWAY_EXTENSION_FIELDS}


def validate_chat_body(body: dict[str, Any]) -> None:
    validate_model(body)
    validate_gateway_fields(body)
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
