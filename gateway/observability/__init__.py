"""Metrics (Prometheus), traces (OpenTelemetry), structured logs, /health, /ready, /metrics.

`install(app, services)` wires it all into an app; the request path reaches it through the
hooks in core.py (one decorator or one call per place)."""

from __future__ import annotations

from typing import Any

from gateway.observability.core import Observability
from gateway.observability.middleware import ObservabilityMiddleware


def install(app: Any, services: Any) -> Observability:
    observability: Observability = services.observability
    observability.bind(services)
    app.add_middleware(ObservabilityMiddleware, observability=observability)
    return observability


__all__ = ["Observability", "install"]
