"""A quiet tenant's chat latency, alone and beside a noisy tenant, on one gateway process.

    .venv/bin/python -m tests.benchmarks.bench_noisy_neighbour [--chats 30]

The noisy tenant: 40 reads with min_position=10^12 (refused: past the log's head), then at
once 45 reads waiting 10 s for a position the views never reach (no projection runs, as
when the views lag) and 150 streams that the upstream sends slowly and the client reads
slowly (default limits: 50 in flight per project, an upstream pool of 200). Meanwhile the
quiet tenant sends its chats one after the other. SQLite store, simulated OpenAI upstream.
Printed: p50 / p95 / max of the quiet tenant's chat latency, its statuses, and what the
noisy tenant got.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter

import httpx

from gateway.simulator import SimulatorState
from tests.support.harness import Gateway, Tenant, simulated_gateway

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
DURATION_S_MAX = 120.0


async def quiet(gateway: Gateway, tenant: Tenant, chats: int) -> list[tuple[int, float]]:
    results = []
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=60) as client:
        for _ in range(chats):
            started = time.monotonic()
            response = await client.post(
                "/v1/chat/completions", json=BODY, headers=tenant.headers()
            )
            results.append((response.status_code, (time.monotonic() - started) * 1000.0))
    return results


async def noisy(gateway: Gateway, tenant: Tenant, head: int) -> Counter[str]:
    limits = httpx.Limits(max_connections=300)
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=60, limits=limits) as c:

        async def read(position: int) -> str:
            response = await c.get(
                "/v1/billing/balance", params={"min_position": position}, headers=tenant.headers()
            )
            return f"read {response.status_code}"

        async def stream() -> str:
            body = {**BODY, "stream": True, "max_tokens": 64}
            async with c.stream(
                "POST", "/v1/chat/completions", json=body, headers=tenant.headers()
            ) as response:
                async for _ in response.aiter_raw():
                    await asyncio.sleep(0.3)
                return f"stream {response.status_code}"

        far = await asyncio.gather(*(read(10**12) for _ in range(40)))
        tasks = [read(head) for _ in range(45)] + [stream() for _ in range(150)]
        return Counter(far + list(await asyncio.gather(*tasks)))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=30)
    args = parser.parse_args()
    chats = max(1, min(args.chats, 500))
    state = SimulatorState()
    with simulated_gateway(
        {
            "LEDGERGATE_DATA_DIR": tempfile.mkdtemp(prefix="lg-bench-noisy-"),
            "LEDGERGATE_OPENAI_API_KEY": "sk-bench",
            "LEDGERGATE_RUN_SWEEPER": "0",
            "LEDGERGATE_RUN_PROJECTIONS": "0",
        },
        state,
    ) as gateway:
        loud, calm = gateway.tenant(balance="100.00"), gateway.tenant(balance="100.00")
        with gateway.client(timeout=180) as http:  # one-time loading, before any timing
            warm = http.post("/v1/chat/completions", json=BODY, headers=loud.headers())
        head = int(warm.headers["x-lg-ledger-position"])
        alone = asyncio.run(quiet(gateway, calm, chats))
        state.chunk_delay_s = 0.5

        async def together() -> tuple[list[tuple[int, float]], Counter[str]]:
            noise = asyncio.ensure_future(noisy(gateway, loud, head))
            await asyncio.sleep(1.0)
            measured = await quiet(gateway, calm, chats)
            return measured, await asyncio.wait_for(noise, DURATION_S_MAX)

        beside, noise = asyncio.run(together())
    print(f"quiet tenant, {chats} sequential chats (ms)")
    print(f"{'condition':<28}{'p50':>9}{'p95':>9}{'max':>9}  statuses")
    for label, results in (("alone", alone), ("beside the noisy tenant", beside)):
        latencies = [ms for _, ms in results]
        statuses = dict(Counter(status for status, _ in results))
        print(
            f"{label:<28}{statistics.median(latencies):>9.1f}{percentile(latencies, 0.95):>9.1f}"
            f"{max(latencies):>9.1f}  {statuses}"
        )
    print("noisy tenant got:", dict(sorted(noise.items())))


if __name__ == "__main__":
    main()
