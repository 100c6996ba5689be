"""The convergence claims of tests/benchmarks/sim_router.py, asserted with fixed seeds."""

from __future__ import annotations

import pytest

from domain.routing import BREAKER_CLOSED, BREAKER_HALF_OPEN, BREAKER_OPEN
from tests.benchmarks.sim_router import simulate

CONVERGENCE_REQUESTS_MAX = 700


@pytest.mark.parametrize("seed", [7, 11])
async def test_traffic_converges_to_the_best_upstream_shifts_when_it_degrades_and_returns(
    seed: int,
) -> None:
    learn, degrade, recover = await simulate(seed)

    # Phase 1: A is the best trade-off and takes most of the traffic.
    assert learn.share("sim-a") >= 0.85
    assert learn.converged_after is not None and learn.converged_after <= CONVERGENCE_REQUESTS_MAX

    # Phase 2: A fails 60% of the time; its breaker opens and B takes over.
    assert degrade.share("sim-b") >= 0.85 and degrade.share("sim-a") <= 0.05
    assert (
        degrade.converged_after is not None and degrade.converged_after <= CONVERGENCE_REQUESTS_MAX
    )
    states = [(t.endpoint_key, t.to_state) for t in degrade.transitions]
    assert ("openai:default", BREAKER_OPEN) in states

    # Phase 3: A recovers; the breaker half-opens, closes, and A wins its traffic back.
    states = [(t.endpoint_key, t.to_state) for t in recover.transitions]
    assert ("openai:default", BREAKER_HALF_OPEN) in states
    assert states[-1] == ("openai:default", BREAKER_CLOSED)
    assert recover.share("sim-a") >= 0.85
    assert (
        recover.converged_after is not None and recover.converged_after <= CONVERGENCE_REQUESTS_MAX
    )
