"""Money conservation over a mixed run (issue 9, "Must show"), on SQLite and PostgreSQL, over
real HTTP with the real openai SDK: managed and BYOK projects, n > 1, streams, upstream
failures, sweeps (with and without a late answer), journalled usage, and upstreams that
report impossible usage. Then, replaying the event log itself (not the views):

* every request's debit equals its expected charge, recomputed here from the rules the
  README states (the reported usage as the client saw it, the admission terms);
* per account, Σ debits + balance = Σ credits, to the nano-unit, with nothing pending;
* the balances view agrees with the replay."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import openai
import pytest

from domain import commands as c
from domain.account import Account
from domain.ids import request_aggregate_id
from domain.request import Request
from gateway.serving import BackgroundServer
from gateway.simulator import SimulatorState, create_simulator_app
from gateway.sweeper import sweep_once
from tests.support.harness import Gateway, start_gateway
from tests.support.ledger import admit_command

NANO = Decimal("0.000000001")
SECRET = "a-test-secret-key-of-32-characters!"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count the coins"}]}


@pytest.fixture
def run(backend) -> Iterator[tuple[Gateway, SimulatorState]]:
    state = SimulatorState()
    with BackgroundServer(create_simulator_app(state)) as server:
        gateway = start_gateway(
            {
                **backend,
                "LEDGERGATE_OPENAI_BASE_URL": server.base_url + "/v1",
                "LEDGERGATE_OPENAI_API_KEY": "sk-managed",
                "LEDGERGATE_SECRET_KEY": SECRET,
                "LEDGERGATE_RUN_SWEEPER": "0",
            }
        )
        try:
            gateway.set_price("gpt-4o-mini", "1", "2")
            yield gateway, state
        finally:
            gateway.server.stop()


def _q(value: Decimal) -> Decimal:
    return value.quantize(NANO)


def expected_debit(terms: Request.Admitted, reported_in: Any, reported_out: Any) -> Decimal:
    """The README's rule, written independently of domain/: counts that are not
    non-negative integers or exceed what the request could produce are replaced by their
    bound and the charge is capped at the reservation; BYOK debits only the fee."""
    bound_in = terms.estimated_input_tokens * 2 + 1024
    bound_out = terms.max_output_tokens
    flagged = False

    def clamp(value: Any, bound: int) -> int:
        nonlocal flagged
        if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > bound:
            flagged = True
            return bound
        return value

    tokens_in, tokens_out = clamp(reported_in, bound_in), clamp(reported_out, bound_out)
    provider = _q(
        (
            Decimal(tokens_in) * terms.input_price_per_mtok
            + Decimal(tokens_out) * terms.output_price_per_mtok
        )
        / Decimal(1_000_000)
    )
    converted = _q(provider * terms.fx_rate)
    fee = _q(converted * terms.fee_rate)
    debit = fee if terms.key_source == "byok" else converted + fee
    return min(debit, terms.reserved_amount) if flagged else debit


def test_every_debit_follows_the_rules_and_debits_plus_balances_equal_credits(run) -> None:
    gateway, state = run
    managed = gateway.tenant(balance="20.00")
    budgeted = gateway.tenant(balance="3.00", daily_budget="2.00")
    own = gateway.tenant(balance="1.00")
    stored = gateway.store_provider_key(own, "sk-own-Zq8XvA1b2C3d4E5f6")
    assert stored.status_code == 200
    # request id -> (reported prompt tokens, reported completion tokens) as the client saw
    # them; None: the request failed before any output (nothing may be charged).
    reported: dict[str, tuple[Any, Any] | None] = {}

    def chat(tenant: Any, **extra: Any) -> None:
        client = gateway.openai(tenant)
        raw = client.chat.completions.with_raw_response.create(**BODY, **extra)
        body = raw.http_response.json()
        reported[raw.headers["x-request-id"]] = (
            body["usage"]["prompt_tokens"],
            body["usage"]["completion_tokens"],
        )

    def stream(tenant: Any, **extra: Any) -> None:
        events = gateway.openai(tenant).chat.completions.create(
            **BODY, stream=True, stream_options={"include_usage": True}, **extra
        )
        usage = None
        with events:
            for chunk in events:
                usage = chunk.usage or usage
            request_id = events.response.headers["x-request-id"]
        assert usage is not None
        reported[request_id] = (usage.prompt_tokens, usage.completion_tokens)

    def failing(tenant: Any) -> None:
        state.error_status = 500
        try:
            with pytest.raises(openai.InternalServerError) as failed:
                gateway.openai(tenant).chat.completions.create(**BODY)
            reported[failed.value.response.headers["x-request-id"]] = None
        finally:
            state.error_status = None

    for tenant in (managed, budgeted, own):
        chat(tenant)
        chat(tenant, n=3, max_tokens=200)
        stream(tenant)
        stream(tenant, n=2, max_tokens=50)
        failing(tenant)
        for override in ({"completion_tokens": 10**9}, {"prompt_tokens": -1_000_000}):
            state.usage_override = override
            try:
                chat(tenant, max_tokens=100)
            finally:
                state.usage_override = None

    # Sweeps: admitted as a process that died would leave them (its lease never renewed).
    now = gateway.services.clock.now()
    swept: dict[str, str] = {}  # request id -> what happens after the sweep
    for tenant, key_source, after in (
        (managed, "managed", "nothing"),
        (own, "byok", "nothing"),
        (managed, "managed", "late answer"),
        (own, "byok", "late answer"),
        (budgeted, "managed", "journalled"),
    ):
        command = admit_command(
            tenant.project_id, now, key_source=key_source, input_tokens=400, output_tokens=600
        )
        facts = c.RequestFacts(**{**command.facts.__dict__, "deadline_at": now})
        request_id = gateway.execute(c.AdmitRequest(**{**command.__dict__, "facts": facts}))[
            "request_id"
        ]
        swept[request_id] = after
        if after == "journalled":
            gateway.execute(
                c.JournalUsage(request_id, c.UsageReport(380, 250), "stop", 5, None, 3, 2)
            )
    outcomes = sweep_once(gateway.services, grace_s=0)
    assert {o["request_id"] for o in outcomes} == set(swept)
    for request_id, after in swept.items():
        if after == "late answer":  # the process was alive after all: a correction
            gateway.execute(
                c.CompleteRequest(request_id, c.UsageReport(410, 520), "stop", 9, None, 5, 4)
            )
            reported[request_id] = (410, 520)
        elif after == "journalled":
            reported[request_id] = (380, 250)
        else:
            reported[request_id] = ("swept", None)

    # --- replay the event log itself -------------------------------------------------------
    app = gateway.services.app
    notifications = app.recorder.select_notifications(start=1, limit=1_000_000)
    credits: dict[Any, Decimal] = defaultdict(Decimal)
    debits: dict[Any, Decimal] = defaultdict(Decimal)
    pending: dict[Any, Decimal] = defaultdict(Decimal)
    per_request: dict[str, Decimal] = defaultdict(Decimal)
    projects: dict[Any, Any] = {}
    for notification in notifications:
        event = app.mapper.to_domain_event(notification)
        account = event.originator_id
        if isinstance(event, Account.Opened):
            projects[account] = event.project_id
        elif isinstance(event, Account.ToppedUp | Account.Adjusted):
            credits[account] += event.amount
        elif isinstance(event, Account.Reserved):
            pending[account] += event.amount
        elif isinstance(event, Account.ChargePosted):
            pending[account] -= event.reserved_amount
            debits[account] += event.amount
            per_request[event.request_id] += event.amount
        elif isinstance(event, Account.ChargeCorrected):
            debits[account] += event.amount
            per_request[event.request_id] += event.amount
        elif isinstance(event, Account.ReservationReleased):
            pending[account] -= event.amount

    checked = 0
    for request_id, usage in reported.items():
        [terms] = [
            e
            for e in app.events.get(request_aggregate_id(request_id))
            if isinstance(e, Request.Admitted)
        ]
        if usage is None:
            expected = Decimal(0)  # failed before any output: released in full
        elif usage[0] == "swept":
            expected = expected_debit(terms, terms.estimated_input_tokens, 0)  # input only
        else:
            expected = expected_debit(terms, *usage)
        assert per_request.get(request_id, Decimal(0)) == expected, (request_id, usage)
        checked += 1
    assert checked == len(reported) == 3 * 7 + 5
    byok_debits = [
        per_request[rid]
        for rid in reported
        if any(
            isinstance(e, Request.Admitted) and e.key_source == "byok"
            for e in app.events.get(request_aggregate_id(rid))
        )
    ]
    assert len(byok_debits) == 9 and set(byok_debits) == {Decimal(0)}  # fee 0%: nothing debited

    gateway.settle()
    with gateway.client() as http:
        views = {
            tenant.project_id: http.get("/v1/billing/balance", headers=tenant.headers()).json()
            for tenant in (managed, budgeted, own)
        }
    for account, project_id in projects.items():
        balance = credits[account] - debits[account] - pending[account]
        assert pending[account] == 0
        assert debits[account] + balance == credits[account]
        assert balance >= 0
        view = views[project_id]
        assert Decimal(view["available"]) == balance and Decimal(view["pending"]) == 0
        assert Decimal(view["posted"]) == debits[account]
    assert sum(debits.values()) + sum(credits[a] - debits[a] - pending[a] for a in projects) == sum(
        credits.values()
    )
