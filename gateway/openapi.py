"""The OpenAPI document, made true to what the routes do.

The routes read raw requests (they answer their own 400s in the OpenAI envelope), so
FastAPI alone documents no request bodies, types every 200 as a string and lists a 422 no
route ever answers. `install_openapi` builds FastAPI's document once and then, per
operation: the request body schema (chat and embeddings: the OpenAI fields plus the
gateway's extensions, open to further OpenAI fields), the query parameters each read takes,
the 200 body and its content types, every error status the route can answer (OpenAI
envelope), and `X-Request-Id` on every response. tests/e2e/test_openapi_schemathesis.py runs
schemathesis over the served document.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

JSON = "application/json"

_STRING = {"type": "string"}
_OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}
_NULLABLE_STRING = {"anyOf": [{"type": "string"}, {"type": "null"}]}

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "code"],
            "properties": {
                "message": _STRING,
                "type": _STRING,
                "code": _STRING,
                "param": _NULLABLE_STRING,
            },
            "additionalProperties": True,
        }
    },
}

_CONTENT_PART = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": _STRING, "text": _STRING},
    "additionalProperties": True,
}
_MESSAGE = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {
            "type": "string",
            "enum": ["system", "developer", "user", "assistant", "tool", "function"],
        },
        "content": {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": _CONTENT_PART},
                {"type": "null"},
            ]
        },
        "name": _STRING,
        "tool_call_id": _STRING,
        "tool_calls": {"type": "array", "items": _OBJECT},
    },
    "additionalProperties": True,
}
_MODEL = {
    "type": "string",
    "description": "a catalog name or alias, `auto`, or a compliance shorthand, with an "
    "optional variant (`eu-strict:small`, `auto:floor`)",
    "maxLength": 200,
}
_ID = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"}

CHAT_REQUEST = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": _MODEL,
        "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
        "stream": {"type": "boolean"},
        "stream_options": {
            "type": "object",
            "properties": {"include_usage": {"type": "boolean"}},
            "additionalProperties": True,
        },
        "max_tokens": {"type": "integer", "minimum": 1},
        "max_completion_tokens": {"type": "integer", "minimum": 1},
        "n": {"type": "integer", "minimum": 1, "maximum": 128},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "stop": {"anyOf": [{"type": "string"}, {"type": "array", "items": _STRING}]},
        "seed": {"type": "integer"},
        "user": {"type": "string", "maxLength": 256},
        "tools": {"type": "array", "items": _OBJECT},
        "tool_choice": {"anyOf": [{"type": "string"}, _OBJECT]},
        "response_format": _OBJECT,
        "logprobs": {"type": "boolean"},
        "top_logprobs": {"type": "integer", "minimum": 0, "maximum": 20},
        "metadata": _OBJECT,
        # Gateway extensions: read by the gateway, never forwarded to a provider.
        "routing_preferences": {
            "type": "object",
            "properties": {"compliance": _STRING, "fallback_models": {"type": "boolean"}},
            "additionalProperties": True,
        },
        "pii_policy": {
            "type": "object",
            "properties": {
                "enabled": {"type": "boolean"},
                "action": {"type": "string", "enum": ["pseudonymize", "redact", "block"]},
                "sensitivity": {"type": "string", "enum": ["low", "medium", "high"]},
                "rehydrate_response": {"type": "boolean"},
            },
            "additionalProperties": True,
        },
        "trace_id": _ID,
        "conversation_id": _ID,
    },
    # Any other OpenAI field is accepted and forwarded (or refused by name if the chosen
    # provider cannot honour it).
    "additionalProperties": True,
}
EMBEDDINGS_REQUEST = {
    "type": "object",
    "required": ["model", "input"],
    "properties": {
        "model": _MODEL,
        "input": {
            "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                {"type": "array", "minItems": 1, "items": {"type": "integer"}},
                {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "array", "minItems": 1, "items": {"type": "integer"}},
                },
            ]
        },
        "encoding_format": {"type": "string", "enum": ["float", "base64"]},
        "dimensions": {"type": "integer", "minimum": 1, "maximum": 65536},
        "user": {"type": "string", "maxLength": 256},
        "routing_preferences": _OBJECT,
        "pii_policy": _OBJECT,
        "trace_id": _ID,
        "conversation_id": _ID,
    },
    "additionalProperties": True,
}

CHAT_COMPLETION = {
    "type": "object",
    "required": ["id", "object", "created", "model", "choices"],
    "properties": {
        "id": _STRING,
        "object": {"type": "string", "enum": ["chat.completion"]},
        "created": {"type": "integer"},
        "model": _STRING,
        "choices": {"type": "array", "items": _OBJECT},
        "usage": _OBJECT,
    },
    "additionalProperties": True,
}
EMBEDDING_LIST = {
    "type": "object",
    "required": ["object", "data", "model"],
    "properties": {
        "object": {"type": "string", "enum": ["list"]},
        "data": {"type": "array", "items": _OBJECT},
        "model": _STRING,
        "usage": _OBJECT,
    },
    "additionalProperties": True,
}
LIST = {
    "type": "object",
    "required": ["data"],
    "properties": {"object": _STRING, "data": {"type": "array", "items": _OBJECT}},
    "additionalProperties": True,
}
AS_OF = {
    "type": "object",
    "required": ["as_of_position"],
    "properties": {"as_of_position": {"type": "integer"}},
    "additionalProperties": True,
}

TRACE_REQUEST = {
    "type": "object",
    "required": ["name", "budget", "allowed_models"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "budget": {"type": "string", "description": "an amount in the project's currency"},
        "max_depth": {"type": "integer", "minimum": 1, "maximum": 32},
        "allowed_models": {
            "type": "array",
            "items": {"type": "string"},
            "minItems": 1,
            "maxItems": 32,
            "description": "model names, aliases or shorthands (auto, eu-strict, …)",
        },
        "expires_in_s": {"type": "integer", "minimum": 1, "maximum": 604800},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}

# --- query parameters ----------------------------------------------------------------------


def _query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    parameter: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        parameter["description"] = description
    return parameter


_INSTANT = {"type": "string", "format": "date-time"}
MIN_POSITION = _query(
    "min_position",
    {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
    "wait (up to 10 s) until the views have applied this log position; if they have not, "
    "503 min_position_not_reached (Retry-After: 1); past the log's head: 400",
)
_DATA_PAGE = [
    _query("since", _INSTANT),
    _query("until", _INSTANT),
    _query("cursor", {"type": "string", "pattern": "^[0-9]{1,19}$"}, "next_cursor of a page"),
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
    MIN_POSITION,
]
QUERY_PARAMETERS: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("get", "/v1/data/audit"): [
        _query("actor_id", {"type": "string", "maxLength": 256}),
        _query("model", {"type": "string", "maxLength": 200}),
        _query(
            "status",
            {
                "type": "string",
                "enum": [
                    "received",
                    "admitted",
                    "rejected",
                    "dispatched",
                    "streaming",
                    "completed",
                    "failed",
                    "abandoned",
                ],
            },
        ),
        _query("since", _INSTANT),
        _query("until", _INSTANT),
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
        _query("cursor", _STRING),
        _query("conversation_id", _ID, "one thread, oldest first unless order=desc"),
        _query("trace_id", _ID),
        _query("key_id", {"type": "string", "format": "uuid"}),
        _query("provider", {"type": "string", "pattern": "^[a-z0-9][a-z0-9_\\-]{0,63}$"}),
        _query("order", {"type": "string", "enum": ["asc", "desc"]}),
        MIN_POSITION,
    ],
    ("get", "/v1/data/routing"): _DATA_PAGE,
    ("get", "/v1/data/pii"): _DATA_PAGE,
    ("get", "/v1/data/models"): [
        _query("model", {"type": "string", "maxLength": 200}),
        _query("since", _INSTANT),
        _query("until", _INSTANT),
        MIN_POSITION,
    ],
    ("get", "/v1/data/events"): [
        *_DATA_PAGE[:3],
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
        _query("type", _STRING, "comma-separated event types, e.g. Request.Completed"),
        MIN_POSITION,
    ],
    ("get", "/v1/data/audit/{request_id}"): [MIN_POSITION],
    ("get", "/v1/data/traces"): [
        *_DATA_PAGE[:3],
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 200}),
        _query("status", {"type": "string", "enum": ["open", "closed", "expired"]}),
        MIN_POSITION,
    ],
    ("get", "/v1/data/traces/{trace_id}"): [
        _query("format", {"type": "string", "enum": ["json", "otlp"]}, "otlp: OTLP/JSON"),
        MIN_POSITION,
    ],
    ("get", "/v1/billing/balance"): [MIN_POSITION],
    ("get", "/v1/billing/usage"): [
        _query(
            "group_by", _STRING, "comma-separated: day, model, provider, key, actor, key_source"
        ),
        _query("since", {"type": "string", "format": "date"}),
        _query("until", {"type": "string", "format": "date"}),
        MIN_POSITION,
    ],
    ("get", "/v1/data/pricing"): [
        {"name": "model", "in": "query", "required": True, "schema": {"type": "string"}},
        _query("at", _INSTANT),
        _query("currency", {"type": "string", "enum": ["EUR", "USD", "SEK"]}),
        _query("history", {"type": "boolean"}, "every effective-dated price and FX rate"),
        MIN_POSITION,
    ],
    ("get", "/v1/models"): [_query("compliance", _STRING)],
    ("get", "/v1/models/leaderboard"): [_query("compliance", _STRING)],
    ("get", "/v1/billing/reconciliations"): [
        _query("provider", _STRING),
        _query("month", {"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])$"}),
        _query("limit", {"type": "integer", "minimum": 1}),
        _query("lines", {"type": "boolean"}),
        MIN_POSITION,
    ],
    ("get", "/v1/admin/projections/dead-letters"): [
        _query("view", _STRING),
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
    ],
}

# --- responses --------------------------------------------------------------------------------

# Errors every route may answer: a bad parameter or body (400), the error handler's last
# resort (500).
_ALWAYS = (400, 500)
# What a route that needs a project key adds: a missing/unknown key (401), the project's
# in-flight limit on this process (429 project_concurrency_exceeded, gateway/fairness.py).
_PROJECT = (401, 429)
_ADMIN = (401, 403)  # a wrong admin token; the admin API switched off
_READ_WAIT = (503,)  # min_position not reached in time
_PROVIDER = (401, 402, 403, 404, 409, 413, 429, 502, 503, 504)

ERRORS_BY_ROUTE: dict[tuple[str, str], tuple[int, ...]] = {
    ("post", "/v1/chat/completions"): _PROJECT + _PROVIDER,
    ("post", "/v1/embeddings"): _PROJECT + _PROVIDER,
    ("get", "/v1/models"): _PROJECT + (403,),
    ("get", "/v1/models/leaderboard"): _PROJECT + (403,),
    ("get", "/v1/models/{model}"): _PROJECT + (403, 404),
    ("get", "/v1/data/audit"): _PROJECT + _READ_WAIT,
    ("get", "/v1/data/audit/{request_id}"): _PROJECT + (404,) + _READ_WAIT,
    ("get", "/v1/billing/balance"): _PROJECT + (404,) + _READ_WAIT,
    ("get", "/v1/billing/usage"): _PROJECT + _READ_WAIT,
    ("get", "/v1/billing/plan"): _PROJECT,
    ("get", "/v1/data/pricing"): _PROJECT + (404,) + _READ_WAIT,
    ("get", "/v1/data/routing"): _PROJECT + _READ_WAIT,
    ("get", "/v1/data/pii"): _PROJECT + _READ_WAIT,
    ("get", "/v1/data/models"): _PROJECT + _READ_WAIT,
    ("get", "/v1/data/events"): _PROJECT + _READ_WAIT,
    ("post", "/v1/traces"): _PROJECT + (403, 404, 413, 503),
    ("get", "/v1/traces/{trace_id}"): _PROJECT + (404,),
    ("post", "/v1/traces/{trace_id}/close"): _PROJECT + (404, 413),
    ("get", "/v1/data/traces"): _PROJECT + _READ_WAIT,
    ("get", "/v1/data/traces/{trace_id}"): _PROJECT + (404,) + _READ_WAIT,
    ("get", "/v1/billing/reconciliations"): _ADMIN + _READ_WAIT,
    ("get", "/v1/billing/reconciliations/{reconciliation_id}"): _ADMIN + (404,) + _READ_WAIT,
    ("get", "/health"): (),
    ("get", "/ready"): (503,),
    ("get", "/metrics"): (401,),
}
SUCCESS_BY_ROUTE: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/v1/chat/completions"): {
        JSON: {"schema": CHAT_COMPLETION},
        "text/event-stream": {"schema": _STRING},
    },
    ("post", "/v1/embeddings"): {JSON: {"schema": EMBEDDING_LIST}},
    ("get", "/v1/models"): {JSON: {"schema": LIST}},
    ("get", "/v1/data/audit"): {JSON: {"schema": {**LIST, "required": ["data", "as_of_position"]}}},
    ("get", "/v1/data/audit/{request_id}"): {JSON: {"schema": AS_OF}},
    ("get", "/v1/billing/balance"): {JSON: {"schema": AS_OF}},
    ("get", "/v1/data/routing"): {
        JSON: {"schema": {**LIST, "required": ["data", "as_of_position"]}}
    },
    ("get", "/v1/data/pii"): {JSON: {"schema": {**LIST, "required": ["data", "as_of_position"]}}},
    ("get", "/v1/data/models"): {
        JSON: {"schema": {**LIST, "required": ["data", "as_of_position"]}}
    },
    ("get", "/v1/data/events"): {
        "application/x-ndjson": {
            "schema": {
                **_OBJECT,
                "description": "one event a line: position, aggregate_id, version, type, "
                "topic, recorded_at, data (X-LG-Next-Cursor continues after the last line)",
            }
        }
    },
    ("get", "/v1/data/traces"): {
        JSON: {"schema": {**LIST, "required": ["data", "as_of_position"]}}
    },
    ("get", "/v1/data/traces/{trace_id}"): {JSON: {"schema": _OBJECT}},
    ("get", "/v1/admin/projections/dead-letters"): {JSON: {"schema": LIST}},
    ("get", "/metrics"): {"text/plain": {"schema": _STRING}},
    ("get", "/v1/audit/checkpoint"): {JSON: {"schema": _OBJECT}, "text/plain": {"schema": _STRING}},
    ("get", "/v1/audit/public-key"): {JSON: {"schema": _OBJECT}, "text/plain": {"schema": _STRING}},
}
BODY_BY_ROUTE: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/v1/chat/completions"): CHAT_REQUEST,
    ("post", "/v1/embeddings"): EMBEDDINGS_REQUEST,
    ("post", "/v1/traces"): TRACE_REQUEST,
}
_REASONS = {
    400: "invalid request (invalid_request, invalid_json, …), naming the `param`",
    401: "missing or invalid credentials",
    402: "insufficient_balance or budget_exceeded",
    403: "not permitted (tier not in plan, admin API off, …)",
    404: "not found (model, request, price, …)",
    409: "duplicate_request or a conflicting state",
    413: "payload_too_large",
    429: "quota_exceeded, project_concurrency_exceeded, or the provider's rate limit "
    "(retry_after_seconds)",
    500: "internal_error",
    502: "the provider failed",
    503: "unavailable (no route, PII screening, FX rate, read position not reached, "
    "gateway_busy, …)",
    504: "the provider timed out",
}
_REQUEST_ID_HEADER = {
    "X-Request-Id": {
        "description": "lg_req_<hex>, on every response",
        "required": True,
        "schema": {"type": "string", "pattern": "^lg_req_"},
    }
}


def _errors_for(method: str, path: str) -> tuple[int, ...]:
    if (method, path) in ERRORS_BY_ROUTE:
        extra = ERRORS_BY_ROUTE[(method, path)]
    elif path.startswith("/v1/admin/"):
        extra = _ADMIN + (404, 409, 413)
    else:  # the other project routes (audit proofs, traces, credentials, …)
        extra = _PROJECT + (403, 404, 409, 413) + _READ_WAIT
    return tuple(sorted(set(_ALWAYS) | set(extra)))


def _document(app: FastAPI) -> dict[str, Any]:
    spec = get_openapi(title=app.title, version=app.version, routes=app.routes)
    spec.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR
    error_ref = {"$ref": "#/components/schemas/Error"}
    for path, operations in spec.get("paths", {}).items():
        for method, operation in operations.items():
            key = (method, path)
            if key in BODY_BY_ROUTE:
                operation["requestBody"] = {
                    "required": True,
                    "content": {JSON: {"schema": BODY_BY_ROUTE[key]}},
                }
            elif method in ("post", "put", "patch") and "requestBody" not in operation:
                operation["requestBody"] = {
                    "required": False,
                    "content": {JSON: {"schema": _OBJECT}},
                }
            parameters = [
                p for p in operation.get("parameters", []) if p.get("in") != "query"
            ] + copy.deepcopy(QUERY_PARAMETERS.get(key, []))
            if parameters:
                operation["parameters"] = parameters
            success = SUCCESS_BY_ROUTE.get(key, {JSON: {"schema": _OBJECT}})
            responses: dict[str, Any] = {
                "200": {
                    "description": "OK",
                    "content": copy.deepcopy(success),
                    "headers": _REQUEST_ID_HEADER,
                }
            }
            for status in _errors_for(method, path):
                responses[str(status)] = {
                    "description": _REASONS.get(status, "error"),
                    "content": {JSON: {"schema": error_ref}},
                    "headers": _REQUEST_ID_HEADER,
                }
            operation["responses"] = responses
    spec["components"]["schemas"].pop("HTTPValidationError", None)
    spec["components"]["schemas"].pop("ValidationError", None)
    return spec


def install_openapi(app: FastAPI) -> None:
    cached: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if "spec" not in cached:
            cached["spec"] = _document(app)
        return cached["spec"]

    app.openapi = openapi  # type: ignore[method-assign]
