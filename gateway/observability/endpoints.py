"""What GET /ready checks (the route is gateway/http/ops.py): the event store and the read
store answer, the read models are within LEDGERGATE_READY_LAG_POSITIONS_MAX positions of the
event log's head, and the PII engine is warm when it is to be warmed at start. Counts only,
never tenant data.

Two more, listed only while they fail (a ready answer's checks are the ones above): the
first-request warm-up (gateway/warmup.py) has not finished, and, with `serve --workers N`,
not every one of the N workers is warm yet (gateway/workers.py `WarmMarkers`)."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.to_thread

from gateway import heap
from gateway.pii.service import pii_service

READY_CHECK_S_MAX = 2.0  # a store that does not answer within this is "unreachable"


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
    warm_up = getattr(services, "warm_up", None)
    if warm_up is not None and not warm_up.done:
        checks.append(
            {"check": "warm_up", "ok": False, "reason": "the first-request warm-up is running"}
        )
    elif not heap.settled():  # a serving process freezes its startup heap once warm
        checks.append(
            {"check": "warm_up", "ok": False, "reason": "the startup heap is being frozen"}
        )
    markers = getattr(services, "warm_markers", None)
    if markers is not None:
        warm_workers = await anyio.to_thread.run_sync(markers.warm)
        if warm_workers < markers.workers:
            checks.append(
                {
                    "check": "workers",
                    "ok": False,
                    "warm_workers": warm_workers,
                    "workers": markers.workers,
                    "reason": f"{warm_workers} of {markers.workers} workers are warm",
                }
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
