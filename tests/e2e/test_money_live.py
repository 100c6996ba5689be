"""Issue 9 items 4, 5, 6 and issue 11's settlement over real HTTP with the real openai SDK,
on SQLite and PostgreSQL, in front of the simulated OpenAI upstream: n choices are reserved
whole, implausible upstream usage is capped and flagged (audit and ledger entries), a short
deadline never sweeps a live stream or a slow answer, and a settlement that cannot be made
durable still answers the client and is charged its real usage."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from eventsourcing.persistence import RecordConflictError

from domain import commands as c
from domain.account import Account
from domain.ids import account_id, request_aggregate_id
from domain.request import Request
from gateway.serving import BackgroundServer
from gateway.simulator import SimulatorState, create_simulator_app
from gateway.sweeper import sweep_once
from projections.queries import dump_table
from tests.e2e.helpers import audit_record, audit_record_with_status
from tests.support.harness import Gateway, openai_upstream_env, start_gateway

NANO = Decimal("0.000000001")
LONG_REPLY = " ".join(f"word{i}" for i in range(40))


@pytest.fixture
def upstream() -> Iterator[tuple[BackgroundServer, SimulatorState]]:
    state = SimulatorState()
    with BackgroundServer(create_simulator_app(state)) as server:
        yield server, state


def _start(backend: dict[str, str], upstream_url: str, **env: str) -> Gateway:
    gateway = start_gateway(
        {
            **backend,
            **openai_upstream_env(upstream_url),
            **env,
        }
    )
    gateway.set_price("gpt-4o-mini", "1", "2")
    return gateway


@pytest.fixture
def short_deadline(backend, upstream) -> Iterator[tuple[Gateway, SimulatorState]]:
    """A 1 s deadline, no grace, the in-process sweeper every 0.1 s: anything not leased is
    swept almost at once."""
    server, state = upstream
    gateway = _start(
        backend,
        server.base_url,
        LEDGERGATE_REQUEST_TIMEOUT_S="1",
        LEDGERGATE_SWEEP_GRACE_S="0",
        LEDGERGATE_SWEEP_INTERVAL_S="0.1",
    )
    try:
        yield gateway, state
    finally:
        gateway.server.stop()


@pytest.fixture
def gateway(backend, upstream) -> Iterator[tuple[Gateway, SimulatorState]]:
    server, state = upstream
    running = _start(backend, server.base_url)
    try:
        yield running, state
    finally:
        running.server.stop()


def cost(input_tokens: int, output_tokens: int) -> Decimal:
    provider = ((Decimal(input_tokens) + 2 * Decimal(output_tokens)) / 1_000_000).quantize(NANO)
    return provider + (provider * Decimal("0.05")).quantize(NANO)


def request_events(gateway: Gateway, request_id: str) -> list[Any]:
    return list(gateway.services.app.events.get(request_aggregate_id(request_id)))


# --- item 4 ---------------------------------------------------------------------------------


def test_n_choices_reserve_n_times_the_output_allowance_and_leave_no_shortfall(gateway) -> None:
    running, state = gateway
    tenant = running.tenant(balance="10.00")
    state.reply = LONG_REPLY
    raw = running.openai(tenant).chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "many answers please"}],
        n=128,
        max_tokens=1000,
    )
    reply = raw.parse()
    assert len(reply.choices) == 128
    record = audit_record(running, tenant, raw.headers["x-request-id"])
    reserved = Decimal(raw.headers["x-lg-estimated-cost"])
    [admitted] = [
        e
        for e in request_events(running, raw.headers["x-request-id"])
        if isinstance(e, Request.Admitted)
    ]
    assert admitted.max_output_tokens == 128 * 1000
    assert reserved == cost(admitted.estimated_input_tokens, 128_000)
    assert record["output_tokens"] == reply.usage.completion_tokens > 1000  # 128 choices' worth
    assert Decimal(record["cost"]) == cost(reply.usage.prompt_tokens, reply.usage.completion_tokens)
    assert Decimal(record["cost"]) <= reserved and Decimal(record["shortfall_amount"]) == 0
    assert record["usage_flag"] is None and record["usage_source"] == "provider"


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ({"completion_tokens": 10**9}, "output_tokens_beyond_max"),
        ({"prompt_tokens": -1_000_000}, "input_tokens_invalid"),
        ({"completion_tokens": 7.5}, "output_tokens_invalid"),
    ],
)
def test_an_upstream_reporting_impossible_usage_is_capped_flagged_and_never_takes_the_balance(
    gateway, override, problem
) -> None:
    running, state = gateway
    tenant = running.tenant(balance="5.00")
    state.usage_override = override
    raw = running.openai(tenant).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}], max_tokens=100
    )
    raw.parse()
    request_id = raw.headers["x-request-id"]
    reserved = Decimal(raw.headers["x-lg-estimated-cost"])
    charged = Decimal(raw.headers["x-lg-actual-cost"])
    assert charged <= reserved
    record = audit_record(running, tenant, request_id)
    assert record["status"] == "completed" and record["usage_source"] == "capped"
    assert problem in record["usage_flag"]
    assert record["input_tokens"] >= 0 and 0 <= record["output_tokens"] <= 100
    assert Decimal(record["shortfall_amount"]) == 0
    with running.client() as http:
        balance = http.get("/v1/billing/balance", headers=tenant.headers()).json()
    assert Decimal(balance["available"]) == Decimal("5.00") - charged
    # Reconciliation reads: the ledger entry of the charge is flagged too.
    entries = [
        row
        for row in dump_table(running.services.store, "lg_ledger_entries", "position")
        if row["request_id"] == request_id and row["entry_type"] == "charge"
    ]
    assert [row["usage_source"] for row in entries] == ["capped"]


# --- item 6 ---------------------------------------------------------------------------------


def test_a_stream_longer_than_deadline_plus_grace_is_delivered_whole_and_charged_its_output(
    short_deadline,
) -> None:
    running, state = short_deadline
    tenant = running.tenant(balance="5.00")
    state.reply = LONG_REPLY
    state.words_per_chunk = 1
    state.chunk_delay_s = 0.06  # 40 chunks: ~2.4 s, over twice the 1 s deadline
    started = time.monotonic()
    stream = running.openai(tenant).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "a long story"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage, request_id = [], None, None
    with stream:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text.append(chunk.choices[0].delta.content)
            if chunk.usage is not None:
                usage = chunk.usage
        request_id = stream.response.headers["x-request-id"]
    assert time.monotonic() - started > 2.0
    assert "".join(text) == LONG_REPLY and usage is not None
    record = audit_record(running, tenant, request_id)
    assert record["status"] == "completed", record
    assert record["output_tokens"] == usage.completion_tokens > 0
    assert Decimal(record["cost"]) == cost(usage.prompt_tokens, usage.completion_tokens)
    kinds = [type(e).__name__ for e in request_events(running, request_id)]
    assert "Abandoned" not in kinds and "DeadlineExtended" in kinds


def test_a_slow_non_streaming_request_returns_its_answer_and_is_charged(short_deadline) -> None:
    running, state = short_deadline
    tenant = running.tenant(balance="5.00")
    state.response_delay_s = 2.5  # the deadline is 1 s, the sweeper runs every 0.1 s
    raw = running.openai(tenant).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "take your time"}]
    )
    reply = raw.parse()
    assert reply.choices[0].message.content
    charged = Decimal(raw.headers["x-lg-actual-cost"])
    assert charged == cost(reply.usage.prompt_tokens, reply.usage.completion_tokens) > 0
    record = audit_record(running, tenant, raw.headers["x-request-id"])
    assert record["status"] == "completed" and Decimal(record["cost"]) == charged


def test_an_abandoned_request_with_no_live_process_is_still_swept(short_deadline) -> None:
    running, _ = short_deadline
    tenant = running.tenant(balance="5.00")
    from tests.support.ledger import admit_command

    now = running.services.clock.now()
    # Admitted as a process that then died would have: nobody holds or renews its lease.
    command = admit_command(tenant.project_id, now)
    command = c.AdmitRequest(
        **{
            **command.__dict__,
            "facts": c.RequestFacts(**{**command.facts.__dict__, "deadline_at": now}),
        }
    )
    admitted = running.execute(command)
    record = audit_record_with_status(
        lambda: audit_record(running, tenant, admitted["request_id"]), "abandoned"
    )
    assert record["status"] == "abandoned" and record["usage_source"] == "estimated"


# --- issue 11: settlement never fails a served request -----------------------------------


def test_a_charge_that_keeps_conflicting_still_answers_and_is_charged_its_real_usage(
    gateway, monkeypatch
) -> None:
    running, _ = gateway
    tenant = running.tenant(balance="5.00")
    writer = running.services.writer
    original = writer.execute_async
    failures = {"left": 10}

    async def conflicting(command: c.Command) -> Any:
        if isinstance(command, c.CompleteRequest) and failures["left"] > 0:
            failures["left"] -= 1
            raise RecordConflictError("another process wrote the account")
        return await original(command)

    monkeypatch.setattr(writer, "execute_async", conflicting)
    raw = running.openai(tenant).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello there"}]
    )
    reply = raw.parse()
    assert raw.status_code == 200 and reply.choices[0].message.content
    request_id = raw.headers["x-request-id"]
    assert "x-lg-actual-cost" not in raw.headers  # not durable yet: charged in the background
    journalled = [
        e for e in request_events(running, request_id) if isinstance(e, Request.UsageJournalled)
    ]
    assert [e.output_tokens for e in journalled] == [reply.usage.completion_tokens]
    deadline = time.monotonic() + 10
    charges: list[Any] = []
    while time.monotonic() < deadline and not charges:
        events = running.services.app.events.get(account_id(tenant.project_id))
        charges = [e for e in events if isinstance(e, Account.ChargePosted)]
        time.sleep(0.05)
    [charge] = charges
    assert charge.request_id == request_id and charge.usage_source == "provider"
    assert charge.amount == cost(reply.usage.prompt_tokens, reply.usage.completion_tokens)


def test_sweep_once_never_reports_a_live_request_as_swept(short_deadline) -> None:
    running, state = short_deadline
    tenant = running.tenant(balance="5.00")
    state.response_delay_s = 1.8
    with httpx.Client(base_url=running.base_url, timeout=30) as http:
        import threading

        result: dict[str, Any] = {}

        def call() -> None:
            result["response"] = http.post(
                "/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                headers=tenant.headers(),
            )

        worker = threading.Thread(target=call)
        worker.start()
        swept: list[dict[str, Any]] = []
        for _ in range(12):
            time.sleep(0.12)
            swept += sweep_once(running.services, grace_s=0)
        worker.join(10)
    assert result["response"].status_code == 200
    assert swept == []
