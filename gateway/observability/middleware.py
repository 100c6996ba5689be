"""One ASGI middleware per app: the request's root span (continuing a client `traceparent`),
its metrics and its access log line, all taken from the finished answer.

It reads the gateway's own response headers (X-Request-Id, X-LG-Model, X-LG-Provider,
X-LG-Key-Source, X-LG-Overhead-Ms, X-LG-Cache), so the routes need no metrics code. Pure
ASGI, not BaseHTTPMiddleware: a stream passes through untouched and its latency is measured
to the last byte.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from gateway.observability.core import Observability, RequestObservation, _clean
from gateway.observability.metrics import CACHE_OUTCOMES, KEY_SOURCES, NONE, bounded
from gateway.observability.tracing import trace_id_from_traceparent

access_log = logging.getLogger("ledgergate.access")

TRACE_RESPONSE_HEADER = b"traceresponse"  # W3C Trace Context level 2: our trace and span id
UNMATCHED_ROUTE = "unmatched"
# Probes and scrapes answer every few seconds: counted, not logged line by line.
QUIET_ROUTES = frozenset({"/health", "/ready", "/metrics"})


class ObservabilityMiddleware:
    def __init__(self, app: Any, observability: Observability) -> None:
        self.app = app
        self.observability = observability

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        observability = self.observability
        started = time.perf_counter()
        observation = RequestObservation(observability=observability, started=started)
        request_headers = _headers(scope.get("headers") or ())
        server_span = None
        attached = None
        if observability.tracer is not None:
            from opentelemetry import context as otel_context
            from opentelemetry import trace
            from opentelemetry.trace.propagation.tracecontext import (
                TraceContextTextMapPropagator,
            )

            parent = TraceContextTextMapPropagator().extract(request_headers)
            server_span = observability.tracer.start_span(
                f"{scope.get('method', 'GET')} {scope.get('path', '')}",
                context=parent,
                kind=trace.SpanKind.SERVER,
            )
            span_context = server_span.get_span_context()
            observation.trace_id = format(span_context.trace_id, "032x")
            observation.span_id = format(span_context.span_id, "016x")
            attached = otel_context.attach(trace.set_span_in_context(server_span, parent))
        else:
            observation.trace_id = trace_id_from_traceparent(request_headers.get("traceparent"))
        token = observability.begin(observation)
        status = 500
        response_headers: dict[str, str] = {}
        finished: float | None = None

        async def send_observed(message: dict[str, Any]) -> None:
            nonlocal status, response_headers, finished
            if message["type"] == "http.response.start":
                status = int(message["status"])
                response_headers = _headers(message.get("headers") or ())
                if server_span is not None:
                    trace_response = f"00-{observation.trace_id}-{observation.span_id}-01".encode()
                    message["headers"] = [
                        *message.get("headers", ()),
                        (TRACE_RESPONSE_HEADER, trace_response),
                    ]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                finished = time.perf_counter()
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            ended = finished or time.perf_counter()
            route_object = scope.get("route")
            route = getattr(route_object, "path", None) or UNMATCHED_ROUTE
            try:
                self._record(observation, scope, route, status, response_headers, ended - started)
            finally:
                if server_span is not None:
                    from opentelemetry import context as otel_context
                    from opentelemetry.trace import Status, StatusCode

                    server_span.set_attributes(
                        {
                            "http.request.method": str(scope.get("method", "")),
                            "http.route": route,
                            "http.response.status_code": status,
                            **_clean(
                                {
                                    "request_id": response_headers.get("x-request-id"),
                                    "project_id": observation.project_id,
                                    "model": response_headers.get("x-lg-model"),
                                    "provider": response_headers.get("x-lg-provider"),
                                    "key_source": response_headers.get("x-lg-key-source"),
                                }
                            ),
                        }
                    )
                    if status >= 500:
                        server_span.set_status(Status(StatusCode.ERROR))
                    server_span.end()
                    if attached is not None:
                        otel_context.detach(attached)
                observability.end(token)

    def _record(
        self,
        observation: RequestObservation,
        scope: dict[str, Any],
        route: str,
        status: int,
        headers: dict[str, str],
        seconds: float,
    ) -> None:
        metrics = self.observability.metrics
        model = headers.get("x-lg-model")
        provider = headers.get("x-lg-provider")
        provider_label = metrics.provider_label(provider)
        key_source = bounded(headers.get("x-lg-key-source"), KEY_SOURCES)
        metrics.requests.labels(
            route, str(status), metrics.model_label(model), provider_label, key_source
        ).inc()
        metrics.latency.labels(route, provider_label).observe(seconds)
        overhead_ms = _int(headers.get("x-lg-overhead-ms"))
        if overhead_ms is not None:
            metrics.overhead.labels(route, provider_label).observe(overhead_ms / 1000.0)
        cache = headers.get("x-lg-cache")
        if cache:
            metrics.cache.labels(route, bounded(cache, CACHE_OUTCOMES)).inc()
        if route in QUIET_ROUTES:
            return
        access_log.info(
            "request",
            extra={
                "event": "access",
                "request_id": headers.get("x-request-id"),
                "project_id": observation.project_id,
                "method": scope.get("method"),
                "route": route,
                "status": status,
                "model": model,
                "provider": provider,
                "key_source": headers.get("x-lg-key-source"),
                "cache": cache or NONE,
                "latency_ms": round(seconds * 1000.0, 1),
                "overhead_ms": overhead_ms,
                "trace_id": observation.trace_id,
            },
        )


def _headers(raw: Any) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in raw}


def _int(value: str | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        return None
