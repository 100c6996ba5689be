"""The gateway process killed mid-stream (SIGKILL): after a restart and a sweep, the request
is `abandoned`, nothing stays reserved by mistake, and the ledger still balances."""

from __future__ import annotations

import os
import signal
import time
from decimal import Decimal
from uuid import UUID

import httpx

from domain.ids import request_aggregate_id
from tests.e2e.helpers import audit_record_with_status, read_data_lines
from tests.support.ledger import replay_account, store_application
from tests.support.processes import cli, price_gpt_4o_mini, process_env, start_server


def test_a_gateway_killed_mid_stream_leaves_an_abandoned_request_and_a_balanced_ledger(
    backend, simulator, tmp_path
) -> None:
    server, state = simulator
    state.chunk_delay_s = 0.2  # a long stream, so the kill lands in the middle of it
    env = process_env(
        backend, server.base_url, LEDGERGATE_REQUEST_TIMEOUT_S="1", LEDGERGATE_RUN_SWEEPER="0"
    )
    project = cli(env, "project", "create", "--name", "crash", "--currency", "USD")
    key = cli(env, "key", "create", "--project", project["project_id"])
    # The same top-up twice (same reference): applied once.
    topup = ("topup", "--project", project["project_id"], "--amount", "3.00",
             "--currency", "USD", "--reference", "t1")  # fmt: skip
    topped = cli(env, *topup)
    again = cli(env, *topup)
    assert (
        topped["applied"] is True
        and again["applied"] is False
        and again["available"] == "3.000000000"
    )
    price_gpt_4o_mini(env)
    headers = {"Authorization": f"Bearer {key['api_key']}", "X-User-Id": "carol"}

    process, base = start_server(env)
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "tell me a long story"}],
        "stream": True,
    }
    try:
        with (
            httpx.Client(base_url=base, timeout=30) as http,
            http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response,
        ):
            assert response.status_code == 200
            request_id = response.headers["x-request-id"]
            read_data_lines(response, 3)
            os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()

    time.sleep(1.2)  # the request's deadline (received + 1 s) passes
    process, base = start_server(env)
    try:
        swept = cli(env, "sweep", "--grace-seconds", "0")
        assert [r["request_id"] for r in swept["requests"]] == [request_id], _as_stored(
            backend, request_id
        )
        second = cli(env, "sweep", "--grace-seconds", "0")
        assert second["swept"] == 0  # sweeping is idempotent
        record = audit_record_with_status(
            lambda: httpx.get(f"{base}/v1/data/audit/{request_id}", headers=headers).json(),
            "abandoned",
        )
        balance = httpx.get(f"{base}/v1/billing/balance", headers=headers).json()
    finally:
        process.terminate()
        process.wait(10)

    assert record["status"] == "abandoned"
    assert record["usage_source"] == "estimated"
    with store_application(backend) as app:
        replay = replay_account(app, UUID(project["project_id"]))
        terms = app.repository.get(request_aggregate_id(request_id)).terms
    # The documented rule: a dispatched request is charged its estimated input tokens at the
    # admission price plus the fee, and no output.
    provider_cost = (
        Decimal(terms.estimated_input_tokens) * Decimal("0.15") / Decimal(1_000_000)
    ).quantize(Decimal("1e-9"))
    assert Decimal(record["cost"]) == provider_cost + (provider_cost * Decimal("0.05")).quantize(
        Decimal("1e-9")
    )
    assert replay.pending == 0
    assert replay.lowest_available >= 0
    assert replay.credits == Decimal("3.00")
    assert replay.charges == {request_id: Decimal(record["cost"])}
    assert Decimal(balance["pending"]) == 0
    assert Decimal(balance["available"]) == Decimal("3.00") - Decimal(record["cost"])


def _as_stored(backend: dict[str, str], request_id: str) -> str:
    """The request as its events left it (for a failure message): what the sweep saw."""
    with store_application(backend) as app:
        request = app.repository.get(request_aggregate_id(request_id))
        events = [type(e).__name__ for e in app.events.get(request_aggregate_id(request_id))]
    return f"status {request.status}, deadline {request.deadline_at}, events {events}"
