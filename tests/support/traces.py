"""A gateway on a travelling clock in front of the simulated OpenAI upstream, with prices
set before the clock's start: what the trace tests (contract, expiry, roll-ups, rebuild)
run against."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from domain.clock import FixedClock
from tests.support.harness import Gateway
from tests.support.ledger import start_clocked_gateway

PRICES = {"gpt-4o-mini": ("0.15", "0.60"), "gpt-4.1": ("2.00", "8.00")}


def clocked_gateway(
    env: dict[str, str], upstream_url: str, clock: FixedClock, **extra_env: str
) -> Iterator[Gateway]:
    gateway = start_clocked_gateway(
        {
            **env,
            "LEDGERGATE_OPENAI_BASE_URL": upstream_url + "/v1",
            "LEDGERGATE_OPENAI_API_KEY": "sk-test",
            "LEDGERGATE_RUN_SWEEPER": "false",
            **extra_env,
        },
        clock,
    )
    try:
        start: datetime = clock.now()
        for model, (input_price, output_price) in PRICES.items():
            gateway.set_price(
                model, input_price, output_price, effective_from=start - timedelta(days=30)
            )
        yield gateway
    finally:
        gateway.server.stop()
