"""Router simulation: three fake upstreams with different latency, error rate and price.

    python tests/benchmarks/sim_router.py [--seed 7]

Phases (simulated time, 100 ms between requests):
  1. learn     — A is the best trade-off (fast, reliable, mid-priced); traffic should converge to A.
  2. degrade   — A starts failing 60% of requests and slows down; its breaker opens, traffic
                 shifts to B.
  3. recover   — A is healthy again; the breaker half-opens, probes succeed, it closes, and
                 traffic returns to A as old evidence fades.

Everything runs through the real Router, BreakerBoard and run_with_failover; only the
upstreams and the clocks are fake. tests/unit/routing/test_simulation.py runs the same
simulation with a fixed seed and asserts the claims printed here.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from domain.catalog import Catalog, spec_from_mapping  # noqa: E402
from domain.clock import FixedClock  # noqa: E402
from domain.tiers import effective_tier  # noqa: E402
from gateway.providers.base import ProviderEndpoint  # noqa: E402
from gateway.routing.balancer import EndpointPool  # noqa: E402
from gateway.routing.breaker import BreakerBoard, BreakerConfig, BreakerTransition  # noqa: E402
from gateway.routing.decision import RouteTarget  # noqa: E402
from gateway.routing.failover import FailoverExhausted, run_with_failover  # noqa: E402
from gateway.routing.router import Router  # noqa: E402
from tests.support.routing import upstream_outage  # noqa: E402

INTER_ARRIVAL_S = 0.1
CONVERGENCE_WINDOW = 50
CONVERGENCE_SHARE = 0.7


@dataclass
class FakeUpstream:
    model: str
    provider: str
    latency_ms_median: float
    error_rate: float
    price_usd_per_million: str  # blended list price (input = output for simplicity)
    quality: str


@dataclass
class PhaseResult:
    name: str
    requests: int
    served: Counter[str]
    served_last_half: Counter[str]
    served_first_hundred: Counter[str]
    failovers: int
    failed_requests: int
    transitions: list[BreakerTransition] = field(default_factory=list)
    converged_after: int | None = None  # requests into the phase until the rolling share held

    def first_hundred_share(self, model: str) -> float:
        total = sum(self.served_first_hundred.values())
        return self.served_first_hundred[model] / total if total else 0.0

    def share(self, model: str, *, last_half: bool = True) -> float:
        counts = self.served_last_half if last_half else self.served
        total = sum(counts.values())
        return counts[model] / total if total else 0.0


UPSTREAMS = (
    FakeUpstream("sim-a", "openai", 300.0, 0.02, "3.00", "0.80"),
    FakeUpstream("sim-b", "anthropic", 900.0, 0.01, "10.00", "0.85"),
    FakeUpstream("sim-c", "google", 200.0, 0.25, "0.50", "0.75"),
)


def sim_catalog(upstreams: tuple[FakeUpstream, ...] = UPSTREAMS) -> Catalog:
    models = tuple(
        spec_from_mapping(
            {
                "name": upstream.model,
                "provider": upstream.provider,
                "upstream_id": upstream.model,
                "capabilities": ["chat"],
                "size_class": "medium",
                "regions": ["us"],
                "tiers": ["unrestricted"],
                "quality": upstream.quality,
                # The same prior for all: the router must learn who is fast.
                "latency_ms_typical": 800,
                "prices": [
                    {
                        "effective_from": "2026-01-01T00:00:00Z",
                        "currency": "USD",
                        "input_per_million": upstream.price_usd_per_million,
                        "output_per_million": upstream.price_usd_per_million,
                    }
                ],
            }
        )
        for upstream in upstreams
    )
    return Catalog(models=models)


class Simulation:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.clock = FixedClock(datetime(2026, 11, 21, 8, 0, tzinfo=UTC))
        self.catalog = sim_catalog()
        self.board = BreakerBoard(config=BreakerConfig(cooldown_s=30.0), clock=self.clock)
        self.transitions: list[BreakerTransition] = []
        self.board.subscribe(self.transitions.append)
        endpoints = [
            ProviderEndpoint(provider=u.provider, base_url=f"http://fake/{u.model}")
            for u in UPSTREAMS
        ]
        self.pool = EndpointPool(self.board, endpoints)
        self.router = Router(
            self.catalog, board=self.board, pool=self.pool, rng=random.Random(seed + 1)
        )
        self.upstreams = {u.model: u for u in UPSTREAMS}
        self.behaviour = {u.model: (u.latency_ms_median, u.error_rate) for u in UPSTREAMS}
        self.effective = effective_tier("unrestricted")

    def _now_s(self) -> float:
        return (self.clock.now() - datetime(2026, 11, 21, tzinfo=UTC)).total_seconds()

    async def _attempt(self, target: RouteTarget) -> str:
        latency_ms, error_rate = self.behaviour[target.spec.name]
        latency = latency_ms * math.exp(self.rng.gauss(0.0, 0.3))
        failed = self.rng.random() < error_rate
        spent = latency * (0.3 if failed else 1.0)
        self.clock.advance(seconds=spent / 1000.0)
        if failed:
            raise upstream_outage(target.spec.provider, message="fake outage")
        return target.spec.name

    async def run_phase(self, name: str, requests: int, watch: str) -> PhaseResult:
        served: Counter[str] = Counter()
        served_last_half: Counter[str] = Counter()
        served_first_hundred: Counter[str] = Counter()
        rolling: deque[bool] = deque(maxlen=CONVERGENCE_WINDOW)
        converged_after: int | None = None
        failovers = failed = 0
        first_transition = len(self.transitions)
        for index in range(requests):
            self.clock.advance(seconds=INTER_ARRIVAL_S)
            decision = self.router.decide("auto", self.effective)
            try:
                result = await run_with_failover(
                    self.router, decision, self._attempt, monotonic=self._now_s
                )
            except FailoverExhausted:
                failed += 1
                rolling.append(False)
                continue
            model = result.value
            served[model] += 1
            if index < 100:
                served_first_hundred[model] += 1
            if index >= requests // 2:
                served_last_half[model] += 1
            failovers += int(result.failed_over)
            rolling.append(model == watch)
            if (
                converged_after is None
                and len(rolling) == CONVERGENCE_WINDOW
                and sum(rolling) / CONVERGENCE_WINDOW >= CONVERGENCE_SHARE
            ):
                converged_after = index + 1
        return PhaseResult(
            name,
            requests,
            served,
            served_last_half,
            served_first_hundred,
            failovers,
            failed,
            self.transitions[first_transition:],
            converged_after,
        )


async def simulate(
    seed: int = 7, phase_requests: tuple[int, int, int] = (1500, 1000, 2000)
) -> list[PhaseResult]:
    sim = Simulation(seed)
    results = [await sim.run_phase("1 learn", phase_requests[0], watch="sim-a")]
    sim.behaviour["sim-a"] = (900.0, 0.6)
    results.append(await sim.run_phase("2 A degrades", phase_requests[1], watch="sim-b"))
    sim.behaviour["sim-a"] = (300.0, 0.02)
    results.append(await sim.run_phase("3 A recovers", phase_requests[2], watch="sim-a"))
    return results


def print_report(results: list[PhaseResult], seed: int) -> None:
    print(
        f"Router simulation, seed {seed}; upstreams (median latency, error rate, blended $/M, quality):"
    )
    for u in UPSTREAMS:
        print(
            f"  {u.model}: {u.latency_ms_median:.0f} ms, {u.error_rate:.0%}, ${u.price_usd_per_million}, q={u.quality}"
        )
    print("  phase 2: sim-a -> 900 ms, 60% errors; phase 3: sim-a back to normal\n")
    header = (
        f"{'phase':<14}{'requests':>9}{'A first100':>11}{'A share*':>9}{'B share*':>9}"
        f"{'C share*':>9}{'failovers':>10}{'failed':>7}{'converged after':>17}"
    )
    print(header)
    print("-" * len(header))
    for result in results:
        print(
            f"{result.name:<14}{result.requests:>9}{result.first_hundred_share('sim-a'):>11.1%}"
            f"{result.share('sim-a'):>9.1%}{result.share('sim-b'):>9.1%}{result.share('sim-c'):>9.1%}"
            f"{result.failovers:>10}{result.failed_requests:>7}"
            f"{(str(result.converged_after) + ' req') if result.converged_after else 'never':>17}"
        )
    print("* share of served requests in the second half of the phase")
    print("\nBreaker transitions:")
    for result in results:
        for transition in result.transitions:
            print(
                f"  [{result.name}] {transition.endpoint_key}: {transition.from_state} -> "
                f"{transition.to_state} ({transition.reason}) at {transition.at.time()}"
            )
    print(
        f"\n'converged after' = requests into the phase until {CONVERGENCE_SHARE:.0%} of the last "
        f"{CONVERGENCE_WINDOW} served requests went to the phase's best upstream "
        "(A in phases 1 and 3, B in phase 2)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print_report(asyncio.run(simulate(args.seed)), args.seed)


if __name__ == "__main__":
    main()
