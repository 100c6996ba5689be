"""Operations: GET /health (liveness), GET /ready (readiness), GET /metrics (Prometheus).

- /health answers 200 `{"status": "ok"}` while the process serves; no auth and nothing else
  (no position, no version: issue 9 item 13).
- /ready answers 200 when this process can serve correctly (the checks are
  gateway/observability/endpoints.readiness), else 503 with the failing checks' reasons.
- /metrics is open unless LEDGERGATE_METRICS_TOKEN is set; then it needs
  `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.errors import GatewayError
from gateway.http.deps import ServicesDep
from gateway.observability.endpoints import readiness
from gateway.responses import JsonResponse

router = APIRouter()


@router.get("/health")
async def health() -> Response:
    return JsonResponse({"status": "ok"})


@router.get("/ready")
async def ready(services: ServicesDep) -> Response:
    checks = await readiness(services, services.settings.ready_lag_positions_max)
    failing = [check for check in checks if not check["ok"]]
    return JsonResponse(
        {"status": "ready" if not failing else "not_ready", "checks": checks},
        status_code=200 if not failing else 503,
    )


@router.get("/metrics")
async def metrics(request: Request, services: ServicesDep) -> Response:
    token = services.settings.metrics_token
    if token is not None:
        scheme, _, given = (request.headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            raise GatewayError(
                "invalid_metrics_token",
                "a valid metrics token is required (LEDGERGATE_METRICS_TOKEN)",
            )
    body, content_type = await anyio.to_thread.run_sync(services.observability.metrics.render)
    return Response(body, media_type=content_type)


__all__ = ["router"]
