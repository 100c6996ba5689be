"""The cold start (issue 11): what the first request after start would pay once, paid before
the process reports ready.

`WarmUp.run` is awaited by the app's lifespan (gateway/http/app.py) before the process accepts
its first connection, after the tokenizer is loaded and before the PII engine warms in the
background:
- the PostgreSQL pools hold their connections (the event store's pool opens its connections
  in the background: the first request would otherwise wait for one, or open one itself),
  each has prepared the serving recorder's statement and compiled its function (an empty
  call, gateway/event_store.py), and the writer's advisory-lock session is open
  (gateway/write_locks.py);
- the read store answers one round trip.

It does not pre-connect to the providers: that takes a request (a GET of the origin's root),
and a gateway must send a provider nothing it was not asked to. The first request to each
provider pays its own connect (and, for a real provider, its TLS handshake).

Then, once its PII engine is warm too, a serving process freezes its startup heap
(gateway/heap.py) and, with `serve --workers N`, each worker marks itself warm
(gateway/workers.py `WarmMarkers`): /ready answers 200 only when all N are.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread

from gateway import heap
from gateway.pii.service import pii_service
from gateway.write_locks import AdvisoryLocks

log = logging.getLogger("ledgergate.warmup")

POOL_WAIT_S = 10.0


@dataclass
class WarmUp:
    done: bool = False
    steps_ms: dict[str, float] = field(default_factory=dict)

    async def run(self, services: Any) -> None:
        await self._step("stores", anyio.to_thread.run_sync(fill_pools, services))
        self.done = True
        log.info(
            "warm-up done in %.0f ms (%s)",
            sum(self.steps_ms.values()),
            ", ".join(f"{name} {ms:.0f} ms" for name, ms in self.steps_ms.items()),
        )

    async def _step(self, name: str, step: Any) -> None:
        """One step, timed; its failure is logged by class only (no URL, no message: either
        may carry a secret) and does not stop the others: what it left cold is paid by the
        first request, and /ready's store checks say whether the stores answer."""
        started = time.perf_counter()
        try:
            await step
        except Exception as error:
            log.warning("warm-up step %s failed: %s", name, type(error).__name__)
        self.steps_ms[name] = (time.perf_counter() - started) * 1000


def fill_pools(services: Any) -> None:
    """Wait for the event store's pool to hold its connections; open the writer's lock
    session; one round trip on the read store's."""
    datastore = getattr(services.app.recorder, "datastore", None)
    pool = getattr(datastore, "pool", None)
    if pool is not None and hasattr(pool, "wait"):
        pool.wait(POOL_WAIT_S)
    warm = getattr(services.app.recorder, "warm", None)  # the one-trip recorder (PostgreSQL)
    if warm is not None:
        warm()
    locks = services.writer.locks
    if isinstance(locks, AdvisoryLocks):  # PostgreSQL; SQLite's single process has none
        locks.connect()
    services.runner.views_position()


PII_POLL_S = 0.05


async def mark_warm(services: Any) -> None:
    """Once the PII engine is warm too (when it is warmed at start): freeze the startup heap
    (gateway/heap.py; in a serving process, before /ready answers 200) and, with `serve
    --workers N`, mark this worker warm, so /ready can tell when all N are. A PII engine that
    fails to load never marks it: /ready's pii_engine check gives the reason."""
    markers = services.warm_markers
    if markers is None and heap.settled():
        return
    service = pii_service(services)
    while service.warm_at_start and not service.screener.ready:
        await asyncio.sleep(PII_POLL_S)
    heap.settle_startup_heap()
    if markers is not None:
        await anyio.to_thread.run_sync(markers.mark)
