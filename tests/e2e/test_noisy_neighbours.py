"""One tenant cannot slow or stop another: a noisy tenant's reads waiting for far-away or
not-yet-projected positions hold no worker thread, its slow-reading streams are capped per
project (429 with Retry-After) before they can take the shared upstream pool, and nothing it
does opens a breaker or answers another tenant 503."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.harness import Gateway, openai_upstream_env, start_gateway

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
# Generous: the quiet tenant's chats take ~10-50 ms here; before the fixes they took 5-18 s.
QUIET_CHAT_S_MAX = 3.0
PROJECT_INFLIGHT_DEFAULT = 50
WAITING_READS = 60  # more than the worker thread pool (40) and than the project's limit


@pytest.fixture
def make_gateway(simulator) -> Iterator[Any]:
    started: list[Gateway] = []

    def make(env: dict[str, str]) -> Gateway:
        gateway = start_gateway(
            {
                **env,
                **openai_upstream_env(simulator[0].base_url),
                "LEDGERGATE_RUN_SWEEPER": "0",
            }
        )
        started.append(gateway)
        gateway.set_price("gpt-4o-mini", "0.15", "0.60")
        # A process's first chat loads what it loads once (tokenizer, screening engine):
        # done here, so the figures below are the steady state a neighbour sees.
        with gateway.client(timeout=180) as http:
            warm = http.post("/v1/chat/completions", json=BODY, headers=gateway.tenant().headers())
        assert warm.status_code == 200, warm.text
        return gateway

    yield make
    for gateway in started:
        gateway.server.stop()


async def quiet_chats(gateway: Gateway, headers: dict[str, str], count: int) -> list[tuple]:
    """(status, seconds) of `count` sequential chats by the quiet tenant."""
    results = []
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=60) as client:
        for _ in range(count):
            started = time.monotonic()
            response = await client.post("/v1/chat/completions", json=BODY, headers=headers)
            results.append((response.status_code, time.monotonic() - started))
    return results


def breakers_closed(gateway: Gateway) -> bool:
    return all(b["state"] == "closed" for b in gateway.services.routing.board.snapshot())


def test_reads_waiting_for_positions_hold_no_worker_thread_and_far_positions_are_refused(
    make_gateway, backend
) -> None:
    # No projection runs here: reads that wait for a position can only time out, as when
    # the views lag far behind. Each wait is 10 s; forty of them used to fill the thread pool.
    gateway = make_gateway({**backend, "LEDGERGATE_RUN_PROJECTIONS": "0"})
    noisy, quiet = gateway.tenant(), gateway.tenant()
    with gateway.client() as http:
        written = http.post("/v1/chat/completions", json=BODY, headers=noisy.headers())
    assert written.status_code == 200
    head = int(written.headers["x-lg-ledger-position"])

    async def scenario() -> tuple[list[httpx.Response], list[httpx.Response], list[tuple]]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=60, limits=limits) as c:
            far = await asyncio.gather(
                *(
                    c.get("/v1/billing/balance", params={"min_position": 10**12}, headers=noisy.headers())
                    for _ in range(40)
                )
            )  # fmt: skip
            waiting_task = asyncio.gather(
                *(
                    c.get("/v1/data/audit", params={"min_position": head}, headers=noisy.headers())
                    for _ in range(WAITING_READS)
                )
            )  # fmt: skip
            await asyncio.sleep(0.5)  # every wait is in place
            quiet_results = await quiet_chats(gateway, quiet.headers(), 5)
            return far, await waiting_task, quiet_results

    far, waiting, quiet_results = asyncio.run(scenario())
    assert {r.status_code for r in far} == {400}  # refused at once, never waited for
    assert {r.json()["error"]["param"] for r in far} == {"min_position"}
    assert [status for status, _ in quiet_results] == [200] * 5
    slowest = max(seconds for _, seconds in quiet_results)
    assert slowest < QUIET_CHAT_S_MAX, f"a quiet tenant's chat took {slowest:.1f} s"
    # The views never reach the position here: the first 50 (the project's in-flight limit)
    # waited and ended in edge's retryable 503; the rest were refused 429 at once.
    codes = Counter(r.json()["error"]["code"] for r in waiting)
    assert codes == {
        "min_position_not_reached": PROJECT_INFLIGHT_DEFAULT,
        "project_concurrency_exceeded": WAITING_READS - PROJECT_INFLIGHT_DEFAULT,
    }


def test_slow_reading_streams_are_capped_per_project_and_never_open_a_breaker(
    make_gateway, sqlite_env, simulator
) -> None:
    _, state = simulator
    state.chunk_delay_s = 0.5  # each stream lasts longer upstream than the pool timeout (5 s)
    gateway = make_gateway(
        {
            **sqlite_env,
            "LEDGERGATE_PROJECT_INFLIGHT_MAX": "8",
            "LEDGERGATE_UPSTREAM_CONNECTIONS_MAX": "16",
        }
    )
    noisy, quiet = gateway.tenant(balance="100.00"), gateway.tenant()
    stream_body = {**BODY, "stream": True, "max_tokens": 64}

    async def slow_reader(client: httpx.AsyncClient) -> tuple[int, str | None, str | None]:
        async with client.stream(
            "POST", "/v1/chat/completions", json=stream_body, headers=noisy.headers()
        ) as response:
            if response.status_code != 200:
                body = await response.aread()
                code = httpx.Response(400, content=body).json()["error"]["code"]
                return response.status_code, response.headers.get("retry-after"), code
            async for _ in response.aiter_raw():
                await asyncio.sleep(0.3)  # a client that reads slowly
            return 200, None, None

    async def scenario() -> tuple[list[tuple], list[tuple]]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=60, limits=limits) as c:
            streams = asyncio.gather(*(slow_reader(c) for _ in range(40)))
            await asyncio.sleep(1.0)  # the noisy streams are open
            quiet_results = await quiet_chats(gateway, quiet.headers(), 5)
            return await streams, quiet_results

    streams, quiet_results = asyncio.run(scenario())
    assert [status for status, _ in quiet_results] == [200] * 5  # never a 503
    slowest = max(seconds for _, seconds in quiet_results)
    assert slowest < QUIET_CHAT_S_MAX, f"a quiet tenant's chat took {slowest:.1f} s"
    assert breakers_closed(gateway)
    statuses = [status for status, _, _ in streams]
    assert statuses.count(200) == 8  # the project's limit, never more at once
    refused = [s for s in streams if s[0] != 200]
    assert {(status, retry, code) for status, retry, code in refused} == {
        (429, "1", "project_concurrency_exceeded")
    }
    assert gateway.services.inflight.in_flight(noisy.project_id) == 0  # every slot released
