"""The ledger half of issue 5 over real HTTP, on SQLite and on the real PostgreSQL:
idempotency under concurrent duplicates, daily budgets under concurrency, quotas and
budgets on a travelling clock, BYOK, FX provenance on EUR and SEK, usage and pricing reads."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from domain import commands as c
from domain.account import Account
from domain.clock import FixedClock
from domain.ids import account_id, idempotent_request_id
from gateway.serving import BackgroundServer
from gateway.simulator import SimulatorState, create_simulator_app
from projections.queries import dump_table
from tests.support.harness import Gateway, openai_upstream_env, running_gateway
from tests.support.ledger import admit_command, start_clocked_gateway

MESSAGES = [{"role": "user", "content": "Say hello to the auditors"}]
BODY = {"model": "gpt-4o-mini", "messages": MESSAGES}
BYOK_KEY = "sk-byok-Zq8XvA1b2C3d4E5f6G7h8"
SECRET = "a-test-secret-key-of-32-characters!"


def charges_for(gateway: Gateway, project_id: UUID) -> list[Account.ChargePosted]:
    events = gateway.services.app.repository.event_store.get(account_id(project_id))
    return [e for e in events if isinstance(e, Account.ChargePosted)]


# --- idempotency -------------------------------------------------------------------------


def test_concurrent_duplicates_with_one_idempotency_key_are_run_and_charged_once(
    gateway: Gateway,
) -> None:
    tenant = gateway.tenant(balance="10.00")
    headers = {**tenant.headers(), "Idempotency-Key": "order-7781"}

    def send(_: int) -> Any:
        with gateway.client() as http:
            return http.post("/v1/chat/completions", json=BODY, headers=headers)

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(send, range(8)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * 7
    [ok] = [r for r in responses if r.status_code == 200]
    original = ok.headers["x-request-id"]
    assert original == idempotent_request_id(tenant.project_id, "order-7781")
    for duplicate in (r for r in responses if r.status_code == 409):
        error = duplicate.json()["error"]
        assert error["code"] == "duplicate_request"
        assert error["original_request_id"] == original
        assert error["original_status"] in ("dispatched", "streaming", "completed")
        assert duplicate.headers["x-request-id"] != original  # the refusal is its own record
    with gateway.client() as http:
        retry = http.post("/v1/chat/completions", json=BODY, headers=headers)
    assert retry.status_code == 409
    assert retry.json()["error"]["original_status"] == "completed"
    charges = charges_for(gateway, tenant.project_id)
    assert [charge.request_id for charge in charges] == [original]
    gateway.settle()
    with gateway.client() as http:
        balance = http.get("/v1/billing/balance", headers=tenant.headers()).json()
        refusals = http.get(
            "/v1/data/audit", params={"status": "rejected"}, headers=tenant.headers()
        ).json()["data"]
    assert Decimal(balance["available"]) == Decimal("10.00") - charges[0].amount
    assert len(refusals) == 8 and {r["error_code"] for r in refusals} == {"duplicate_request"}


def test_a_refused_attempt_does_not_bind_its_idempotency_key(gateway: Gateway) -> None:
    tenant = gateway.tenant(balance="0.000001")
    headers = {**tenant.headers(), "Idempotency-Key": "retry-me"}
    with gateway.client() as http:
        poor = http.post("/v1/chat/completions", json=BODY, headers=headers)
        gateway.execute(
            c.TopUp(
                project_id=tenant.project_id, amount=Decimal(5), currency="USD", reference="more"
            )
        )
        funded = http.post("/v1/chat/completions", json=BODY, headers=headers)
        bad_key = http.post(
            "/v1/chat/completions",
            json=BODY,
            headers={**tenant.headers(), "Idempotency-Key": "x" * 300},
        )
    assert poor.status_code == 402
    assert funded.status_code == 200
    assert funded.headers["x-request-id"] == idempotent_request_id(tenant.project_id, "retry-me")
    assert bad_key.status_code == 400 and bad_key.json()["error"]["param"] == "idempotency-key"


# --- daily budgets -----------------------------------------------------------------------


def test_concurrent_requests_never_overshoot_a_keys_daily_budget(gateway: Gateway) -> None:
    budget = Decimal("0.003")
    tenant = gateway.tenant(balance="10.00", daily_budget=str(budget))
    body = {**BODY, "max_tokens": 1000}  # each reservation about 0.00063 USD

    def send(_: int) -> Any:
        with gateway.client() as http:
            return http.post("/v1/chat/completions", json=body, headers=tenant.headers())

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(send, range(24)))
    codes = [r.status_code for r in responses]
    assert codes.count(200) >= 4
    refused = [r.json()["error"] for r in responses if r.status_code != 200]
    assert refused and {e["code"] for e in refused} == {"budget_exceeded"}
    assert {r.status_code for r in responses if r.status_code != 200} == {402}
    assert refused[0]["resets_at"].endswith("T00:00:00Z")
    account = gateway.services.app.repository.get(account_id(tenant.project_id))
    today = datetime.now(UTC).date()
    assert account.spent_on(tenant.key_id, today) <= budget
    assert sum((ch.amount for ch in charges_for(gateway, tenant.project_id)), Decimal(0)) <= budget
    assert account.pending_total == 0


# --- quotas and budgets on a travelling clock ------------------------------------------------


@pytest.fixture
def clocked(
    backend: dict[str, str], simulator: tuple[BackgroundServer, SimulatorState]
) -> Iterator[tuple[Gateway, FixedClock]]:
    clock = FixedClock(datetime(2026, 11, 30, 23, 58, tzinfo=UTC))
    gateway = start_clocked_gateway(
        {
            **backend,
            **openai_upstream_env(simulator[0].base_url),
            "LEDGERGATE_RUN_SWEEPER": "false",
        },
        clock,
    )
    try:
        gateway.set_price(
            "gpt-4o-mini", "0.15", "0.60", effective_from=clock.now() - timedelta(days=30)
        )
        yield gateway, clock
    finally:
        gateway.server.stop()


def test_a_free_plan_quota_answers_429_with_its_reset_and_reopens_next_month(
    clocked: tuple[Gateway, FixedClock],
) -> None:
    gateway, clock = clocked
    tenant = gateway.tenant(balance="100.00", plan="free", daily_budget="0.0015")
    # 999 admissions straight through the writer (group commit), then the 1000th over HTTP
    writer = gateway.services.writer
    futures = [
        writer.submit(
            admit_command(tenant.project_id, clock.now(), input_tokens=1, output_tokens=1)
        )
        for _ in range(999)
    ]
    for future in futures:
        future.result(60)
    with gateway.client() as http:
        last = http.post(
            "/v1/chat/completions", json={**BODY, "max_tokens": 500}, headers=tenant.headers()
        )
        over = http.post(
            "/v1/chat/completions", json={**BODY, "max_tokens": 500}, headers=tenant.headers()
        )
        plan = http.get("/v1/billing/plan", headers=tenant.headers()).json()
    assert last.status_code == 200
    assert over.status_code == 429
    error = over.json()["error"]
    assert error["code"] == "quota_exceeded" and error["type"] == "rate_limit_error"
    assert error["resets_at"] == "2026-12-01T00:00:00Z"
    assert over.headers["retry-after"] == "120"
    assert plan["requests_this_month"] == 1000 and plan["monthly_requests_max"] == 1000

    # December: the quota has reset. The key's daily budget (0.0015) takes a first request;
    # a second whose reservation (max_tokens 2350: about 0.00148) plus today's spend passes
    # the cap is refused, and the same request is admitted after 00:00 UTC.
    clock.set(datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC))
    big = {**BODY, "max_tokens": 2350}
    with gateway.client() as http:
        first = http.post(
            "/v1/chat/completions", json={**BODY, "max_tokens": 100}, headers=tenant.headers()
        )
        refused = http.post("/v1/chat/completions", json=big, headers=tenant.headers())
        clock.set(datetime(2026, 12, 2, 0, 0, tzinfo=UTC))
        next_day = http.post("/v1/chat/completions", json=big, headers=tenant.headers())
    assert first.status_code == 200
    assert refused.status_code == 402
    assert refused.json()["error"]["code"] == "budget_exceeded"
    assert refused.json()["error"]["resets_at"] == "2026-12-02T00:00:00Z"
    assert next_day.status_code == 200


# --- BYOK --------------------------------------------------------------------------------


@pytest.fixture
def byok_gateway(backend: dict[str, str]) -> Iterator[tuple[Gateway, list[str]]]:
    seen_authorization: list[str] = []
    upstream = create_simulator_app(SimulatorState())

    @upstream.middleware("http")
    async def record(request: Any, call_next: Any) -> Any:
        seen_authorization.append(request.headers.get("authorization", ""))
        return await call_next(request)

    with BackgroundServer(upstream) as server:
        with running_gateway(
            {
                **backend,
                "LEDGERGATE_OPENAI_BASE_URL": server.base_url + "/v1",
                "LEDGERGATE_OPENAI_API_KEY": "sk-managed",
                "LEDGERGATE_SECRET_KEY": SECRET,
            }
        ) as gateway:
            yield gateway, seen_authorization


def test_a_byok_project_calls_upstream_with_its_own_key_pays_no_fee_and_the_key_is_never_stored(
    byok_gateway: tuple[Gateway, list[str]],
) -> None:
    gateway, seen = byok_gateway
    own, managed = gateway.tenant(), gateway.tenant()
    stored = gateway.store_provider_key(own, BYOK_KEY)
    with gateway.client() as http:
        own_reply = http.post("/v1/chat/completions", json=BODY, headers=own.headers())
        managed_reply = http.post("/v1/chat/completions", json=BODY, headers=managed.headers())
    assert stored.status_code == 200
    assert BYOK_KEY not in stored.text
    assert stored.json()["key_fingerprint"] and stored.json()["key_source"] == "byok"
    assert own_reply.status_code == 200, own_reply.text
    assert managed_reply.status_code == 200
    assert seen == [f"Bearer {BYOK_KEY}", "Bearer sk-managed"]
    assert own_reply.headers["x-lg-key-source"] == "byok"
    assert managed_reply.headers["x-lg-key-source"] == "managed"
    [own_charge] = charges_for(gateway, own.project_id)
    [managed_charge] = charges_for(gateway, managed.project_id)
    assert own_charge.key_source == "byok" and own_charge.fee_rate == 0
    # BYOK: the provider bills the project directly, so only the fee (0%) is debited; the
    # provider cost is recorded (budgets, usage, reconciliation), never debited (issue 9.5).
    assert own_charge.fee_amount == 0 and own_charge.amount == 0 and own_charge.provider_cost > 0
    assert managed_charge.key_source == "managed" and managed_charge.fee_rate == Decimal("0.05")
    assert managed_charge.fee_amount > 0
    gateway.settle()
    with gateway.client() as http:
        record = http.get(
            f"/v1/data/audit/{own_reply.headers['x-request-id']}", headers=own.headers()
        ).json()
    assert record["key_source"] == "byok" and Decimal(record["fee_amount"]) == 0

    forbidden = [BYOK_KEY.encode(), base64.b64encode(BYOK_KEY.encode()), BYOK_KEY[8:].encode()]
    notifications = gateway.services.app.recorder.select_notifications(start=1, limit=100_000)
    assert notifications
    for notification in notifications:
        for needle in forbidden:
            assert needle not in notification.state, notification.topic
    for table, order in (("lg_audit", "request_id"), ("lg_usage", "project_id")):
        assert BYOK_KEY not in repr(dump_table(gateway.services.store, table, order))


def test_byok_commands_refuse_clearly_without_a_secret_key(gateway: Gateway) -> None:
    tenant = gateway.tenant()
    response = gateway.store_provider_key(tenant, BYOK_KEY)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "secret_key_missing"
    assert "LEDGERGATE_SECRET_KEY" in response.json()["error"]["message"]
    assert BYOK_KEY not in response.text


# --- FX and pricing provenance ---------------------------------------------------------------


def test_eur_and_sek_projects_are_charged_through_recorded_fx_rates_with_provenance(
    gateway: Gateway,
) -> None:
    yesterday = datetime.now(UTC) - timedelta(hours=20)
    eur_rate = gateway.execute(
        c.SetFxRate(base="USD", quote="EUR", rate=Decimal("0.92"), effective_from=yesterday)
    )
    sek = gateway.tenant(balance="100.00", currency="SEK")
    eur = gateway.tenant(balance="10.00", currency="EUR")
    with gateway.client() as http:
        missing = http.post("/v1/chat/completions", json=BODY, headers=sek.headers())
    assert missing.status_code == 503
    assert missing.json()["error"]["code"] == "fx_rate_not_found"
    # SEK is quoted the other way round (1 SEK = 0.095 USD): the domain inverts it
    sek_rate = gateway.execute(
        c.SetFxRate(base="SEK", quote="USD", rate=Decimal("0.095"), effective_from=yesterday)
    )
    with gateway.client() as http:
        eur_reply = http.post("/v1/chat/completions", json=BODY, headers=eur.headers())
        sek_reply = http.post("/v1/chat/completions", json=BODY, headers=sek.headers())
    assert eur_reply.status_code == 200 and sek_reply.status_code == 200
    [eur_charge] = charges_for(gateway, eur.project_id)
    [sek_charge] = charges_for(gateway, sek.project_id)
    for charge, rate, rate_id in (
        (eur_charge, Decimal("0.92"), eur_rate["rate_id"]),
        (
            sek_charge,
            (Decimal(1) / Decimal("0.095")).quantize(Decimal("1e-12")),
            sek_rate["rate_id"],
        ),
    ):
        assert charge.fx_rate == rate and charge.fx_rate_id == rate_id
        converted = (charge.provider_cost * rate).quantize(Decimal("1e-9"))
        fee = (converted * Decimal("0.05")).quantize(Decimal("1e-9"))
        assert charge.amount == converted + fee and charge.fee_amount == fee
    gateway.settle()
    with gateway.client() as http:
        rejected = http.get(
            f"/v1/data/audit/{missing.headers['x-request-id']}", headers=sek.headers()
        ).json()
        record = http.get(
            f"/v1/data/audit/{sek_reply.headers['x-request-id']}", headers=sek.headers()
        ).json()
        pricing = http.get(
            "/v1/data/pricing",
            params={"model": "gpt-4o-mini", "at": record["received_at"]},
            headers=sek.headers(),
        ).json()
    assert rejected["status"] == "rejected" and rejected["error_code"] == "fx_rate_not_found"
    assert record["currency"] == "SEK"
    assert pricing["price"]["price_id"] == record["pricing"]["price_id"]
    assert pricing["price"]["event_id"] == record["pricing"]["price_event_id"] is not None
    assert pricing["fx"]["rate_id"] == record["pricing"]["fx_rate_id"] == sek_rate["rate_id"]
    assert pricing["fx"]["event_id"] == record["pricing"]["fx_rate_event_id"] is not None
    assert Decimal(pricing["fx"]["rate"]) == Decimal(record["pricing"]["fx_rate"])
    assert pricing["fx"]["inverted"] is True


def test_the_pricing_read_answers_which_price_was_in_effect_at_an_instant(gateway: Gateway) -> None:
    tenant = gateway.tenant()
    now = datetime.now(UTC)
    later = gateway.set_price(
        "gpt-4o-mini", "0.30", "1.20", effective_from=now + timedelta(hours=1)
    )
    gateway.settle()
    with gateway.client() as http:
        before = http.get(
            "/v1/data/pricing",
            params={"model": "gpt-4o-mini", "at": now.isoformat()},
            headers=tenant.headers(),
        ).json()
        after = http.get(
            "/v1/data/pricing",
            params={"model": "gpt-4o-mini", "at": (now + timedelta(hours=2)).isoformat()},
            headers=tenant.headers(),
        ).json()
        unknown = http.get("/v1/data/pricing", params={"model": "nope"}, headers=tenant.headers())
        bad_at = http.get(
            "/v1/data/pricing",
            params={"model": "gpt-4o-mini", "at": "noon"},
            headers=tenant.headers(),
        )
    assert before["price"]["input_per_mtok"] == "0.150000000" or Decimal(
        before["price"]["input_per_mtok"]
    ) == Decimal("0.15")
    assert after["price"]["price_id"] == later and Decimal(
        after["price"]["output_per_mtok"]
    ) == Decimal("1.2")
    assert before["fx"]["identity"] is True
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "price_not_found"
    assert bad_at.status_code == 400 and bad_at.json()["error"]["param"] == "at"


# --- usage -------------------------------------------------------------------------------------


def test_usage_groups_charges_by_actor_and_model_and_rebuilds_identically(gateway: Gateway) -> None:
    tenant = gateway.tenant(balance="10.00")
    with gateway.client() as http:
        for user in ("ann", "ann", "ben"):
            assert (
                http.post(
                    "/v1/chat/completions", json=BODY, headers=tenant.headers(user)
                ).status_code
                == 200
            )
    gateway.settle()
    with gateway.client() as http:
        by_actor = http.get(
            "/v1/billing/usage", params={"group_by": "actor"}, headers=tenant.headers()
        ).json()
        by_day_model = http.get("/v1/billing/usage", headers=tenant.headers()).json()
        audit = http.get("/v1/data/audit", headers=tenant.headers()).json()["data"]
        bad_group = http.get(
            "/v1/billing/usage", params={"group_by": "colour"}, headers=tenant.headers()
        )
        bad_range = http.get(
            "/v1/billing/usage",
            params={"since": "2026-02-01", "until": "2026-01-01"},
            headers=tenant.headers(),
        )
    rows = {row["actor"]: row for row in by_actor["data"]}
    assert rows["ann"]["requests"] == 2 and rows["ben"]["requests"] == 1
    total_cost = sum((Decimal(r["cost"]) for r in audit), Decimal(0))
    assert Decimal(by_actor["totals"]["cost"]) == total_cost
    assert by_actor["totals"]["cost_rounded"] == format(total_cost.quantize(Decimal("0.01")), "f")
    assert [row["model"] for row in by_day_model["data"]] == ["gpt-4o-mini"]
    assert by_day_model["data"][0]["requests"] == 3
    assert Decimal(by_day_model["data"][0]["fee_amount"]) == sum(
        (Decimal(r["fee_amount"]) for r in audit), Decimal(0)
    )
    assert by_actor["currency"] == "USD" and by_actor["as_of_position"] > 0
    assert bad_group.status_code == 400 and bad_group.json()["error"]["param"] == "group_by"
    assert bad_range.status_code == 400 and bad_range.json()["error"]["param"] == "until"
    store = gateway.services.store
    live = [dump_table(store, t, "1, 2, 3") for t in ("lg_usage", "lg_pricing_history")]
    gateway.services.runner.rebuild(["usage", "pricing_history"])
    assert [dump_table(store, t, "1, 2, 3") for t in ("lg_usage", "lg_pricing_history")] == live
