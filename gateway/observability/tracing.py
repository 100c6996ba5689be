"""OpenTelemetry traces: on when an OTLP endpoint is configured, off (and free) otherwise.

`LEDGERGATE_OTLP_ENDPOINT` (an OTLP/HTTP base URL, e.g. http://collector:4318) or the standard
`OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` turn it on. The provider is
the app's own (never the process-global one), so FastAPI's built-in instrumentation, which
uses the global provider, stays silent and spans are not doubled.

Span attributes are ids, names and numbers only: request id, model, provider, endpoint,
status, attempt, outcome. Never a prompt, a completion, a key or a PII value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

SERVICE_NAME = "ledgergate"
TRACER_NAME = "ledgergate.gateway"
TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


def otlp_endpoint(raw: Mapping[str, str], environ: Mapping[str, str]) -> str | None:
    return (
        raw.get("LEDGERGATE_OTLP_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or None
    )


def build_tracer_provider(raw: Mapping[str, str], environ: Mapping[str, str]) -> Any | None:
    """A TracerProvider exporting to the configured OTLP endpoint in batches, or None."""
    endpoint = otlp_endpoint(raw, environ)
    if not endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if raw.get("LEDGERGATE_OTLP_ENDPOINT"):
        url = endpoint.rstrip("/")
        exporter = OTLPSpanExporter(
            endpoint=url if url.endswith("/v1/traces") else url + "/v1/traces"
        )
    else:
        exporter = OTLPSpanExporter()  # reads the OTEL_EXPORTER_OTLP_* variables itself
    service = raw.get("LEDGERGATE_OTEL_SERVICE_NAME") or environ.get("OTEL_SERVICE_NAME")
    provider = TracerProvider(resource=Resource.create({"service.name": service or SERVICE_NAME}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def trace_id_from_traceparent(value: str | None) -> str | None:
    """The trace id of a well-formed W3C traceparent (for log correlation when tracing is
    off); None for anything else, including the all-zero invalid id."""
    if not value:
        return None
    match = TRACEPARENT.match(value.strip().lower())
    if match is None or set(match.group(1)) == {"0"}:
        return None
    return match.group(1)
