"""The audit record of a failover that reprices (issue 10's read-side defects), end to end:
the real openai SDK over real HTTP to a local fake OpenAI upstream whose first answer is a
503, so the router fails over from gpt-4o-mini to another model priced differently.

`/v1/data/audit/{id}` must show the route decision, every attempt, and the price and FX
rate actually charged (not the admission's), with the ids of the events that set them; a
rebuilt audit view must equal the live one; and the same request reads the same decimals
on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from domain.catalog import Catalog
from domain.ids import event_id, request_aggregate_id
from domain.request import Request
from projections.queries import dump_table
from tests.fakes.fixtures import start_fake
from tests.fakes.server import FakeUpstreamBase
from tests.support.harness import Gateway, Tenant, running_gateway

QUANTUM = Decimal("0.000000001")
FEE_RATE = Decimal("0.05")
PROMPT_TOKENS, COMPLETION_TOKENS = 1000, 500
# Admission prices gpt-4o-mini; whichever OpenAI chat model the router fails over to is
# priced differently (two figures each, so SQLite's exact text and PostgreSQL's NUMERIC
# would render them differently if a read did not render them one way).
FIRST_MODEL = "gpt-4o-mini"
FIRST_PRICE = ("0.15", "0.60")  # as running_gateway prices it
TARGET_PRICE = ("2.00", "8.00")
_CATALOG = Catalog.shipped()
PRICES = {
    name: FIRST_PRICE if name == FIRST_MODEL else TARGET_PRICE
    for name in _CATALOG.names()
    if _CATALOG.require(name).provider == "openai" and _CATALOG.require(name).has("chat")
}
MESSAGES = [{"role": "user", "content": "Fail over and tell me what it cost"}]


@pytest.fixture
def upstream() -> Iterator[FakeUpstreamBase]:
    fake = start_fake("openai")
    try:
        yield fake
    finally:
        fake.stop()


@contextmanager
def _gateway(env: dict[str, str], upstream: FakeUpstreamBase) -> Iterator[Gateway]:
    upstream_env = {
        "LEDGERGATE_OPENAI_BASE_URL": upstream.base_url,
        "LEDGERGATE_OPENAI_API_KEY": "sk-upstream",
    }
    with running_gateway({**env, **upstream_env}) as gateway:  # prices gpt-4o-mini
        for model, (input_price, output_price) in PRICES.items():
            if model != FIRST_MODEL:
                gateway.set_price(model, input_price, output_price)
        yield gateway


def _failover(gateway: Gateway, upstream: FakeUpstreamBase) -> tuple[Tenant, Any]:
    """One chat request whose first target answers 503 and whose failover target answers."""
    upstream.reset()
    upstream.script(error_status=503)
    upstream.script(prompt_tokens=PROMPT_TOKENS, completion_tokens=COMPLETION_TOKENS)
    tenant = gateway.tenant(balance="10.00")
    raw = gateway.openai(tenant).chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        max_tokens=600,
        extra_body={"routing_preferences": {"fallback_models": True}},
    )
    gateway.settle()
    return tenant, raw


def _record(gateway: Gateway, tenant: Tenant, request_id: str) -> dict[str, Any]:
    with gateway.client() as http:
        response = http.get(f"/v1/data/audit/{request_id}", headers=tenant.headers())
    assert response.status_code == 200, response.text
    return response.json()


def _charge(model: str) -> Decimal:
    input_price, output_price = (Decimal(p) for p in PRICES[model])
    cost = (PROMPT_TOKENS * input_price + COMPLETION_TOKENS * output_price) / Decimal(1_000_000)
    cost = cost.quantize(QUANTUM)
    return cost + (cost * FEE_RATE).quantize(QUANTUM)


def test_a_repriced_failover_shows_the_charged_price_the_route_and_every_attempt(
    backend: dict[str, str], upstream: FakeUpstreamBase
) -> None:
    with _gateway(backend, upstream) as gateway:
        tenant, raw = _failover(gateway, upstream)
        served = raw.headers["x-lg-model"]
        assert served != FIRST_MODEL and served in PRICES  # failed over to a dearer model
        request_id = raw.headers["x-request-id"]
        record = _record(gateway, tenant, request_id)

        # Every attempt, in order, with how each ended and the event that recorded it.
        attempts = record["attempt_log"]
        assert [(a["attempt"], a["model"], a["outcome"]) for a in attempts] == [
            (1, "gpt-4o-mini", "failed_over"),
            (2, served, "completed"),
        ]
        events = list(
            gateway.services.app.repository.event_store.get(request_aggregate_id(request_id))
        )
        ids = {type(e): event_id(e.originator_id, e.originator_version) for e in events}
        dispatched = [
            event_id(e.originator_id, e.originator_version)
            for e in events
            if isinstance(e, Request.Dispatched)
        ]
        assert [a["event_id"] for a in attempts] == dispatched

        # The route decision, with the id of the event that recorded it.
        decision = record["route_decision"]
        assert decision["event_id"] == ids[Request.RouteDecided]
        assert decision["requested_model"] == "gpt-4o-mini" and decision["model"] == "gpt-4o-mini"
        assert decision["candidates"] and all(c["score"] for c in decision["candidates"])

        # /v1/data/routing shows the same candidates, labelled as recorded (model, score,
        # detail), and the failover.
        with gateway.client() as http:
            routing = http.get("/v1/data/routing", headers=tenant.headers()).json()["data"]
        [route] = routing
        assert route["failovers"] == 1 and route["candidates"] == decision["candidates"]
        assert all(Decimal(c["score"]).is_finite() for c in route["candidates"])  # a number

        # The price charged is the failover target's, set by the Repriced event; the
        # admission's stays beside it, set by the Admitted event.
        pricing = record["pricing"]
        assert pricing["repriced"] is True
        assert pricing["set_by_event_id"] == ids[Request.Repriced]
        assert pricing["input_per_mtok"] == "2.000000000"
        assert pricing["output_per_mtok"] == "8.000000000"
        assert pricing["fx_rate"] == "1.000000000000" and pricing["fx_rate_id"] is None
        assert pricing["fee_rate"] == "0.050000"
        admission = pricing["admission"]
        assert admission["event_id"] == ids[Request.Admitted]
        assert admission["model"] == "gpt-4o-mini"
        assert admission["input_per_mtok"] == "0.150000000"
        assert admission["output_per_mtok"] == "0.600000000"
        assert admission["price_id"] != pricing["price_id"]
        # The pricing-history event that set the charged price: the served model's.
        with gateway.client() as http:
            history = http.get(
                "/v1/data/pricing",
                params={"model": served, "history": "true"},
                headers=tenant.headers(),
            ).json()
        assert pricing["price_event_id"] in {p["event_id"] for p in history["prices"]}

        # And the charge is what that price gives.
        assert Decimal(record["cost"]) == _charge(served) != _charge(FIRST_MODEL)
        assert Decimal(raw.headers["x-lg-actual-cost"]) == _charge(served)

        # Rebuilt from the log, the audit view is the live one, row for row.
        store = gateway.services.store
        live = dump_table(store, "lg_audit", "request_id")
        gateway.services.runner.rebuild(["audit"])
        assert dump_table(store, "lg_audit", "request_id") == live
        assert _record(gateway, tenant, request_id)["pricing"] == pricing


# Fields of the reads below that differ between two runs whatever the backend (ids, times,
# positions); everything else, every decimal included, must read the same on both.
_RUN_SPECIFIC = (
    "request_id",
    "project_id",
    "key_id",
    "event_id",
    "price_id",
    "set_by_event_id",
    "price_event_id",
    "fx_rate_event_id",
    "position",
    "as_of_position",
    "effective_from",
    "recorded_at",
    # The router samples its scores: the decision's figures, and which equally priced model
    # the failover lands on, differ run to run.
    "route_decision",
    "model",
    "upstream_model",
    "endpoint",
    "endpoint_name",
    "dispatches",
    "repricings",
    "route",
    "transitions",
)


def _comparable(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: _comparable(item)
            for key, item in value.items()
            if key not in _RUN_SPECIFIC and not key.endswith(("_at", "_ms", "_from", "_id"))
        }
    if isinstance(value, list):
        return [_comparable(item) for item in value]
    return value


def _reads(gateway: Gateway, tenant: Tenant, request_id: str) -> dict[str, Any]:
    with gateway.client() as http:
        headers = tenant.headers()
        return {
            "audit": _record(gateway, tenant, request_id),
            "audit_list": http.get("/v1/data/audit", headers=headers).json()["data"],
            "balance": http.get("/v1/billing/balance", headers=headers).json(),
            "usage": http.get("/v1/billing/usage", headers=headers).json(),
            "pricing": http.get(
                "/v1/data/pricing",
                params={"model": FIRST_MODEL, "history": "true"},
                headers=headers,
            ).json()["prices"],
        }


def test_the_same_request_reads_the_same_decimals_on_sqlite_and_postgres(
    sqlite_env: dict[str, str],
    postgres_env: dict[str, str],
    upstream: FakeUpstreamBase,
    tmp_path: Path,
) -> None:
    reads = {}
    postgres = {**postgres_env, "LEDGERGATE_DATA_DIR": str(tmp_path / "postgres-data")}
    for name, env in (("sqlite", sqlite_env), ("postgres", postgres)):
        with _gateway(env, upstream) as gateway:
            tenant, raw = _failover(gateway, upstream)
            reads[name] = _reads(gateway, tenant, raw.headers["x-request-id"])
    sqlite, postgres = (_comparable(reads[name]) for name in ("sqlite", "postgres"))
    # The canonical renderings (README "Decimals in reads"), on both backends.
    for read in (sqlite, postgres):
        assert read["audit"]["pricing"]["input_per_mtok"] == "2.000000000"
        assert read["audit"]["pricing"]["fx_rate"] == "1.000000000000"
        assert read["audit"]["pricing"]["fee_rate"] == "0.050000"
        assert read["balance"]["credits"] == "10.000000000"
        assert read["pricing"][-1]["input_per_mtok"] == "0.150000000"
    for part in sqlite:
        assert sqlite[part] == postgres[part], part
