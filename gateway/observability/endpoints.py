"""GET /health (liveness), GET /ready (readiness) and GET /metrics (Prometheus).

- /health answers 200 `{"status": "ok"}` while the process serves; no auth and nothing else
  (no position, no version: issue 9 item 13).
- /ready answers 200 when this process can serve correctly: the event store and the read
  store answer, the read models are within LEDGERGATE_READY_LAG_POSITIONS_MAX positions of
  the event log's head, and the PII engine is warm when it is to be warmed at start. Else
  503 with the failing checks' reasons. Counts only, never tenant data.
- /metrics is open unless LEDGERGATE_METRICS_TOKEN is set; then it needs
  `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac
from typing import Any

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import Response

from gateway.errors import GatewayError, error_response
from gateway.observability.core import Observability
from gateway.pii.service import pii_service
from gateway.responses import JsonResponse

READY_LAG_POSITIONS_MAX_DEFAULT = 1000
READY_CHECK_S_MAX = 2.0  # a store that does not answer within this is "unreachable"


def install_endpoints(app: FastAPI, services: Any, observability: Observability) -> None:
    raw = services.settings.raw
    lag_max = int(raw.get("LEDGERGATE_READY_LAG_POSITIONS_MAX") or READY_LAG_POSITIONS_MAX_DEFAULT)
    metrics_token = raw.get("LEDGERGATE_METRICS_TOKEN") or None

    @app.get("/health")
    async def health() -> Response:
        return JsonResponse({"status": "ok"})

    @app.get("/ready")
    async def ready() -> Response:
        checks = await readiness(services, lag_max)
        failing = [check for check in checks if not check["ok"]]
        return JsonResponse(
            {"status": "ready" if not failing else "not_ready", "checks": checks},
            status_code=200 if not failing else 503,
        )

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        if metrics_token is not None:
            scheme, _, given = (request.headers.get("authorization") or "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), metrics_token.encode()
            ):
                from domain.ids import new_request_id

                return error_response(
                    GatewayError(
                        "invalid_metrics_token",
                        "a valid metrics token is required (LEDGERGATE_METRICS_TOKEN)",
                    ),
                    new_request_id(),
                )
        body, content_type = await anyio.to_thread.run_sync(observability.metrics.render)
        return Response(body, media_type=content_type)


async def readiness(services: Any, lag_max: int) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    head = await _bounded(lambda: services.app.recorder.max_notification_id() or 0)
    checks.append(
        {"check": "event_store", "ok": isinstance(head, int)}
        | ({} if isinstance(head, int) else {"reason": f"event store unreachable: {head}"})
    )
    views = await _bounded(services.runner.views_position)
    if not isinstance(views, int):
        checks.append(
            {"check": "read_store", "ok": False, "reason": f"read store unreachable: {views}"}
        )
    else:
        checks.append({"check": "read_store", "ok": True})
        if isinstance(head, int):
            lag = max(head - views, 0)
            check: dict[str, Any] = {
                "check": "projections",
                "ok": lag <= lag_max,
                "lag_positions": lag,
                "lag_positions_max": lag_max,
            }
            if lag > lag_max:
                check["reason"] = f"read models are {lag} positions behind the event log"
            checks.append(check)
    service = pii_service(services)
    if service.warm_at_start:
        warm = service.screener.ready
        checks.append(
            {"check": "pii_engine", "ok": warm}
            | ({} if warm else {"reason": "the PII engine is still loading"})
        )
    return checks


async def _bounded(read: Any) -> Any:
    """The value of `read()` in a worker thread, or a short reason string when it raised or
    took longer than READY_CHECK_S_MAX (the thread is left to finish on its own)."""
    try:
        with anyio.fail_after(READY_CHECK_S_MAX):
            return await anyio.to_thread.run_sync(read, abandon_on_cancel=True)
    except TimeoutError:
        return "timed out"
    except Exception as error:
        return type(error).__name__
