"""Issue 9 items 6 and 8 with several real `serve` processes on one store:

* a duplicate Idempotency-Key racing the original across two processes on PostgreSQL is
  answered 409 duplicate_request, never 400: exactly one admitted and charged per key;
* a sweeper in another process never abandons a request a live process is still streaming
  past its deadline (the lease), and the stream is charged its real output."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

import httpx

from domain.account import Account
from domain.application import open_application
from domain.ids import account_id, request_aggregate_id
from domain.request import Request
from tests.e2e.helpers import audit_record_with_status
from tests.support.ledger import store_application
from tests.support.processes import (
    cli,
    funded_project_with_key,
    process_env,
    start_server,
    stop,
)

RACE_ROUNDS = 20
RACERS_PER_ROUND = 6  # three on each process


def _setup(env: dict[str, str], balance: str = "50.00") -> tuple[str, dict[str, str]]:
    return funded_project_with_key(env, name="race", balance=balance, user="racer")


def _env(backend: dict[str, str], upstream: str, **extra: str) -> dict[str, str]:
    return process_env(backend, upstream, LEDGERGATE_SEED_CATALOG_PRICES="0", **extra)


def test_a_duplicate_key_racing_across_two_processes_is_a_409_and_charged_once(
    postgres_env, simulator
) -> None:
    server, state = simulator
    state.response_delay_s = 0.05  # the original is still in flight while its twins arrive
    env = _env(postgres_env, server.base_url, LEDGERGATE_RUN_SWEEPER="0")
    project_id, headers = _setup(env)
    first, base_a = start_server(env)
    processes = [first]
    try:
        second, base_b = start_server(env)
        processes.append(second)
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "pay once"}]}
        statuses: Counter[int] = Counter()
        codes: Counter[str] = Counter()
        admitted: list[str] = []
        with (
            httpx.Client(base_url=base_a, timeout=30) as client_a,
            httpx.Client(base_url=base_b, timeout=30) as client_b,
            ThreadPoolExecutor(RACERS_PER_ROUND) as pool,
        ):
            for round_number in range(RACE_ROUNDS):
                key_headers = {**headers, "Idempotency-Key": f"order-{round_number}"}
                barrier = threading.Barrier(RACERS_PER_ROUND)

                def send(
                    index: int,
                    key_headers: dict[str, str] = key_headers,
                    barrier: threading.Barrier = barrier,
                ) -> Any:
                    client = client_a if index % 2 == 0 else client_b
                    barrier.wait(10)
                    return client.post("/v1/chat/completions", json=body, headers=key_headers)

                responses = list(pool.map(send, range(RACERS_PER_ROUND)))
                round_statuses = Counter(r.status_code for r in responses)
                statuses.update(round_statuses)
                for response in responses:
                    if response.status_code != 200:
                        codes[response.json()["error"]["code"]] += 1
                    else:
                        admitted.append(response.headers["x-request-id"])
                assert round_statuses == {200: 1, 409: RACERS_PER_ROUND - 1}, (
                    round_number,
                    [(r.status_code, r.text[:200]) for r in responses],
                )
    finally:
        stop(processes)
    assert statuses == {200: RACE_ROUNDS, 409: RACE_ROUNDS * (RACERS_PER_ROUND - 1)}
    assert codes == {"duplicate_request": RACE_ROUNDS * (RACERS_PER_ROUND - 1)}
    app = open_application(postgres_env["LEDGERGATE_DATABASE_URL"], None)
    try:
        events = list(app.events.get(account_id(UUID(project_id))))
    finally:
        app.close()
    charges = Counter(e.request_id for e in events if isinstance(e, Account.ChargePosted))
    reserved = Counter(e.request_id for e in events if isinstance(e, Account.Reserved))
    assert sorted(charges) == sorted(admitted) and set(charges.values()) == {1}
    assert set(reserved.values()) == {1} and len(reserved) == RACE_ROUNDS


def test_a_sweeper_in_another_process_never_abandons_a_stream_a_live_process_serves(
    backend, simulator
) -> None:
    server, state = simulator
    state.reply = " ".join(f"token{i}" for i in range(30))
    state.words_per_chunk = 1
    state.chunk_delay_s = 0.15  # ~4.5 s of streaming on a 1 s deadline
    env = _env(
        backend,
        server.base_url,
        LEDGERGATE_REQUEST_TIMEOUT_S="1",
        LEDGERGATE_RUN_SWEEPER="0",
    )
    project_id, headers = _setup(env, balance="5.00")
    process, base = start_server(env)
    sweeps: list[dict[str, Any]] = []
    try:
        body = {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "stream for a while"}],
            "stream": True,
        }
        with (
            httpx.Client(base_url=base, timeout=30) as http,
            http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response,
        ):
            request_id = response.headers["x-request-id"]
            lines = []
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                lines.append(line)
                # Other processes sweep with no grace while the stream is past its deadline.
                if len(lines) in (12, 22):
                    sweeps.append(cli(env, "sweep", "--grace-seconds", "0"))
        assert lines[-1] == "data: [DONE]" and not any('"error"' in line for line in lines)
        record = audit_record_with_status(
            lambda: httpx.get(f"{base}/v1/data/audit/{request_id}", headers=headers).json(),
            "completed",
        )
    finally:
        stop([process])
    assert [sweep["swept"] for sweep in sweeps] == [0, 0]
    assert record["status"] == "completed" and record["output_tokens"] > 0
    with store_application(backend) as app:
        request_events = list(app.events.get(request_aggregate_id(request_id)))
        account_events = list(app.events.get(account_id(UUID(project_id))))
    assert any(isinstance(e, Request.DeadlineExtended) for e in request_events)
    assert not any(isinstance(e, Request.Abandoned) for e in request_events)
    [charge] = [e for e in account_events if isinstance(e, Account.ChargePosted)]
    assert charge.output_tokens == record["output_tokens"] and charge.amount > 0
