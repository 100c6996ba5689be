"""The cold start (issue 11): what the first request after start would pay once, paid before
the process reports ready.

`WarmUp.run` is awaited by the app's lifespan (gateway/http/app.py) before the process accepts
its first connection, after the tokenizer is loaded and before the PII engine warms in the
background:
- the PostgreSQL pools hold their connections (the event store's pool opens its connections
  in the background: the first request would otherwise wait for one, or open one itself);
- one connection per configured provider origin is open in the upstream client's pool, and
  httpx's send path has run once: a GET of the origin's root, with no credentials (nothing
  a provider bills, and no key sent needlessly), bounded by WARM_CONNECT_S, its failure only
  logged (a provider that is down is the router's business, not readiness').

Then, with `serve --workers N`, each worker marks itself warm once its PII engine is warm too
(gateway/workers.py `WarmMarkers`), and /ready answers 200 only when all N are.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread

from gateway.pii.service import pii_service

log = logging.getLogger("ledgergate.warmup")

WARM_CONNECT_S = 2.0  # a provider origin that does not answer within this is left cold
POOL_WAIT_S = 10.0


@dataclass
class WarmUp:
    done: bool = False
    steps_ms: dict[str, float] = field(default_factory=dict)

    async def run(self, services: Any) -> None:
        await self._step("stores", anyio.to_thread.run_sync(fill_pools, services))
        await self._step("upstreams", preconnect(services))
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
    """Wait for the event store's pool to hold its connections; one round trip on the read
    store's."""
    datastore = getattr(services.app.recorder, "datastore", None)
    pool = getattr(datastore, "pool", None)
    if pool is not None and hasattr(pool, "wait"):
        pool.wait(POOL_WAIT_S)
    services.runner.views_position()


def upstream_origins(services: Any) -> list[str]:
    """The distinct scheme://host:port of every configured provider endpoint."""
    origins: dict[str, None] = {}
    for adapter in services.adapters.values():
        base_url = getattr(getattr(adapter, "endpoint", None), "base_url", "")
        parts = urlsplit(base_url)
        if parts.scheme in ("http", "https") and parts.netloc:
            origins[f"{parts.scheme}://{parts.netloc}"] = None
    return list(origins)


async def preconnect(services: Any) -> None:
    client = services.http_client
    if client is None:
        return

    async def head(origin: str) -> None:
        try:
            await client.get(origin + "/", timeout=WARM_CONNECT_S)
        except Exception as error:  # down or unreachable: the first request connects itself
            log.info("warm-up could not pre-connect an upstream: %s", type(error).__name__)

    await asyncio.gather(*(head(origin) for origin in upstream_origins(services)))


PII_POLL_S = 0.05


async def mark_warm(services: Any) -> None:
    """With `serve --workers N`: mark this worker warm once its PII engine is warm too (when
    it is warmed at start), so /ready can tell when all N are. A PII engine that fails to
    load never marks it: /ready's pii_engine check gives the reason."""
    markers = services.warm_markers
    if markers is None:
        return
    service = pii_service(services)
    while service.warm_at_start and not service.screener.ready:
        await asyncio.sleep(PII_POLL_S)
    await anyio.to_thread.run_sync(markers.mark)
