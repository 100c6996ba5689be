"""A governed trace as OTLP/JSON (`/v1/data/traces/{id}?format=otlp`), so a tracing backend
can ingest it: the body of an OTLP/HTTP `ExportTraceServiceRequest` in the protobuf JSON
mapping with OTLP's own rules — `resourceSpans` → `scopeSpans` → `spans`, lowerCamelCase
field names, `traceId` (32) and `spanId` / `parentSpanId` (16) as lowercase hex, not
base64, 64-bit integers (nanosecond times, token counts) as decimal strings, enums as
integers.

The trace itself is the root span (its id derived from the trace id); each request is a
span under its parent. Attributes follow the GenAI semantic conventions where one exists
(`gen_ai.system`, `gen_ai.request.model`, `gen_ai.usage.*`) and `ledgergate.*` for the
rest (cost and its currency as decimal strings: money is never a float).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.trace import otlp_span_id, otlp_trace_id

SCOPE_NAME = "ledgergate.traces"
SCOPE_VERSION = "1"
SERVICE_NAME = "ledgergate"
SPAN_KIND_INTERNAL = 1
SPAN_KIND_CLIENT = 3
STATUS_UNSET = 0
STATUS_OK = 1
STATUS_ERROR = 2
ERROR_STATUSES = frozenset({"failed", "abandoned"})


def _nanos(instant: str | None) -> str | None:
    if instant is None:
        return None
    moment = datetime.fromisoformat(instant.replace("Z", "+00:00"))
    seconds = int(moment.timestamp())
    return str(seconds * 1_000_000_000 + moment.microsecond * 1000)


def _attribute(key: str, value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": str(value)}}


def _attributes(pairs: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    return [item for key, value in pairs if (item := _attribute(key, value)) is not None]


def _span(span: dict[str, Any], trace_hex: str, parent_hex: str, currency: str) -> dict[str, Any]:
    start = _nanos(span["started_at"])
    end = _nanos(span["finished_at"]) or start
    status: dict[str, Any] = {"code": STATUS_UNSET}
    if span["status"] == "completed":
        status = {"code": STATUS_OK}
    elif span["status"] in ERROR_STATUSES:
        status = {"code": STATUS_ERROR, "message": span["error_code"] or span["status"]}
    operation = "embeddings" if span["endpoint"] == "embeddings" else "chat"
    return {
        "traceId": trace_hex,
        "spanId": otlp_span_id(span["span_id"]),
        "parentSpanId": parent_hex,
        "name": f"{operation} {span['model'] or 'unrouted'}",
        "kind": SPAN_KIND_CLIENT,
        "startTimeUnixNano": start,
        "endTimeUnixNano": end,
        "attributes": _attributes(
            [
                ("gen_ai.operation.name", operation),
                ("gen_ai.system", span["provider"]),
                ("gen_ai.request.model", span["model"]),
                ("gen_ai.usage.input_tokens", span["input_tokens"]),
                ("gen_ai.usage.output_tokens", span["output_tokens"]),
                ("ledgergate.request_id", span["span_id"]),
                ("ledgergate.status", span["status"]),
                ("ledgergate.depth", span["depth"]),
                ("ledgergate.attempts", span["attempts"]),
                ("ledgergate.cost", span["cost"]),
                ("ledgergate.currency", currency),
                ("ledgergate.subtree.cost", span["subtree"]["cost"]),
                ("ledgergate.subtree.spans", span["subtree"]["spans"]),
                ("ledgergate.first_chunk_ms", span["first_chunk_ms"]),
                ("ledgergate.error_code", span["error_code"]),
            ]
        ),
        "status": status,
    }


def trace_as_otlp(tree: dict[str, Any], *, project_id: str) -> dict[str, Any]:
    """The span tree of projections.traces.get_trace_tree as one ExportTraceServiceRequest."""
    trace_hex = otlp_trace_id(tree["id"])
    root_hex = otlp_span_id(tree["id"])
    root = tree["root"]
    start = _nanos(tree["opened_at"])
    finished = tree["closed_at"] or tree["expired_at"] or root["subtree"]["finished_at"]
    root_span = {
        "traceId": trace_hex,
        "spanId": root_hex,
        "name": tree["name"],
        "kind": SPAN_KIND_INTERNAL,
        "startTimeUnixNano": start,
        "endTimeUnixNano": _nanos(finished) or start,
        "attributes": _attributes(
            [
                ("ledgergate.trace_id", tree["id"]),
                ("ledgergate.trace.status", tree["status"]),
                ("ledgergate.trace.budget", tree["budget"]),
                ("ledgergate.trace.max_depth", tree["max_depth"]),
                ("ledgergate.cost", root["subtree"]["cost"]),
                ("ledgergate.currency", tree["currency"]),
                ("ledgergate.subtree.spans", root["subtree"]["spans"]),
                ("gen_ai.usage.input_tokens", root["subtree"]["input_tokens"]),
                ("gen_ai.usage.output_tokens", root["subtree"]["output_tokens"]),
            ]
        ),
        "status": {"code": STATUS_UNSET},
    }
    spans = [root_span]
    pending = [(child, root_hex) for child in root["children"]]
    while pending:  # iterative: depth is bounded, but no recursion is needed at all
        span, parent_hex = pending.pop(0)
        spans.append(_span(span, trace_hex, parent_hex, tree["currency"]))
        own_hex = otlp_span_id(span["span_id"])
        pending.extend((child, own_hex) for child in span["children"])
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": _attributes(
                        [("service.name", SERVICE_NAME), ("ledgergate.project_id", project_id)]
                    )
                },
                "scopeSpans": [
                    {"scope": {"name": SCOPE_NAME, "version": SCOPE_VERSION}, "spans": spans}
                ],
            }
        ]
    }
