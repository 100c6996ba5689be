"""Test mode, as Stripe has it: an `lg_test_` key never reaches a real provider and never
moves real money.

- every attempt of a test-mode request is answered by the built-in simulator
  (gateway/simulator.py), served in-process through an ASGI transport: no socket, no
  provider, no managed or BYOK key is ever used; the route is still decided (so a test key
  shows what a live key would be routed to) and recorded;
- it is reserved and charged, by the live rules, on the project's separate TEST balance
  (domain/ids.account_id(project, "test"), topped up with `ledgergate topup --test` or
  `POST /v1/admin/topups {"test": true}`), which never appears in live balances, usage or
  the finance ledger;
- its audit record says `mode: test`.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import httpx

from domain.ids import MODE_TEST
from gateway.errors import GatewayError
from gateway.providers.base import AdapterLimits, ProviderAdapter, ProviderEndpoint

SIMULATOR_BASE_URL = "http://lg-simulator.invalid/v1"  # never resolved: ASGI transport only


def simulator_adapter(services: Any) -> ProviderAdapter:
    """The OpenAI-format adapter on the in-process simulator (built once in build_services)."""
    return services.simulator  # type: ignore[no-any-return]


def build_simulator_adapter(limits: AdapterLimits) -> ProviderAdapter:
    """The adapter on an in-process simulator (one per Services, over ASGI: no socket)."""
    from gateway.providers.openai import OpenAIAdapter
    from gateway.simulator import SimulatorState, create_simulator_app

    state = SimulatorState()
    # Bounded: the simulator keeps what it received for tests; here nobody reads it.
    state.requests = deque(maxlen=16)  # type: ignore[assignment]
    state.authorizations = deque(maxlen=16)  # type: ignore[assignment]
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_simulator_app(state)),
        timeout=limits.httpx_timeout(),
    )
    endpoint = ProviderEndpoint("openai", SIMULATOR_BASE_URL, api_key=None, name="simulator")
    return OpenAIAdapter(endpoint, client)


def refuse_in_test_mode(mode: str, what: str) -> None:
    """Steps that would reach a real provider outside the dispatch (OCR) are refused."""
    if mode == MODE_TEST:
        raise GatewayError(
            "invalid_request",
            f"{what} is not simulated in test mode; use a live key for it",
            param="messages",
        )


class _UnobservedRouter:
    """The router for a test-mode request: it decides like the live one, but a simulated
    attempt never feeds the live statistics or trips a real endpoint's breaker."""

    def __init__(self, router: Any) -> None:
        self._router = router

    def observe(self, *args: Any, **kwargs: Any) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._router, name)


def router_for(mode: str, router: Any) -> Any:
    return _UnobservedRouter(router) if mode == MODE_TEST else router
