"""Dispatch: admitted → dispatched, with failover across the decision's targets (chat,
streams and embeddings alike).

The first target's dispatch was recorded with admission; every failover target is recorded
(Redispatch, repriced if the model changes) and durable before it is called. A target that
would bill through the other key source than the one admission priced is skipped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from domain import commands as c
from domain.errors import DomainError
from domain.ids import MODE_TEST
from domain.vocabulary import KeySource
from gateway.byok import byok_adapter
from gateway.lifecycle.request import Admission
from gateway.providers.base import ProviderAdapter
from gateway.routing.decision import RouteTarget
from gateway.routing.failover import Measure, SkipTarget, run_with_failover
from gateway.routing.requests import route_of
from gateway.test_mode import router_for, simulator_adapter

T = TypeVar("T")


class Attempts:
    """The per-attempt state of one request: which attempt it is, and the adapter for each
    target (the simulator in test mode, the project's own key for BYOK, else managed)."""

    def __init__(self, services: Any, admitted: Admission) -> None:
        self.services = services
        self.admitted = admitted
        self.attempt = 1

    async def prepare(self, target: RouteTarget) -> ProviderAdapter:
        services, admitted = self.services, self.admitted
        if admitted.mode == MODE_TEST:
            # Test mode: the simulator answers; no provider, no managed or project key.
            return await self._record_attempt(target, simulator_adapter(services))
        managed = services.routing.adapter_for(target)
        own = byok_adapter(services, admitted.project, target.spec.provider, managed)
        if (own is not None) != (admitted.key_source == KeySource.BYOK):
            # The reservation and fee were decided for one key source; a target that would
            # bill through the other one is skipped rather than charged with the wrong tag.
            raise SkipTarget(
                "key_source_mismatch", f"{target.endpoint_key} uses another key source"
            )
        adapter = own or managed
        if adapter is None:
            raise SkipTarget("provider_not_configured", f"no adapter for {target.endpoint_key}")
        return await self._record_attempt(target, adapter)

    async def _record_attempt(
        self, target: RouteTarget, adapter: ProviderAdapter
    ) -> ProviderAdapter:
        if target is not self.admitted.decision.chosen:
            try:
                await self.services.writer.execute_async(
                    c.Redispatch(
                        request_id=self.admitted.request_id,
                        route=route_of(target),
                        attempt=self.attempt + 1,
                    )
                )
            except DomainError as error:  # e.g. no price for the fallback model
                raise SkipTarget(error.code, error.message) from None
            self.attempt += 1
        return adapter

    def deadline_s(self) -> float:
        timeout_s = self.services.settings.request_timeout_s
        return float(max(timeout_s - self.admitted.elapsed_ms() / 1000, 0))


async def dispatch(
    services: Any,
    admitted: Admission,
    call: Callable[[ProviderAdapter, RouteTarget], Awaitable[T]],
    *,
    measure: Measure[T] | None = None,
) -> T:
    """Call the decision's targets in order until one answers (`call` opens the provider
    call on an adapter); raises FailoverExhausted (or the last error) when none did.
    The adapters' own timeouts bound each call: the request deadline is the sweeper's,
    not a limit on a long stream, so an attempt in flight is never cut."""
    attempts = Attempts(services, admitted)

    async def attempt(target: RouteTarget) -> T:
        return await call(await attempts.prepare(target), target)

    outcome = await run_with_failover(
        router_for(admitted.mode, services.routing.router),
        admitted.decision,
        attempt,
        deadline_s=attempts.deadline_s(),
        measure=measure,
        cut_in_flight=False,
    )
    return outcome.value
