"""Governed traces end to end (issue 12): a trace's budget hit by concurrent calls with zero
overshoot (counted by replaying the log), depth and model refusals before any provider
call, a span tree with its roll-ups (and as OTLP/JSON), close and expiry on a travelling
clock, isolation between projects, bad filters refused and recorded. Real HTTP, the real
openai SDK, the simulated OpenAI-format upstream, on SQLite and the real PostgreSQL."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import openai
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from domain.account import Account
from domain.clock import FixedClock
from domain.ids import account_id, request_aggregate_id
from domain.limits import LimitsHeld
from domain.trace import SpanJoined, Trace, trace_aggregate_id
from gateway.http.traces import sweep_expired_traces
from gateway.serving import BackgroundServer
from gateway.simulator import SimulatorState
from tests.e2e.helpers import audit_rows
from tests.support.harness import ADMIN_TOKEN, Gateway, Tenant
from tests.support.traces import clocked_gateway

MESSAGES = [{"role": "user", "content": "Plan the next step of the research."}]
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def clocked(
    backend: dict[str, str], simulator: tuple[BackgroundServer, SimulatorState]
) -> Iterator[tuple[Gateway, FixedClock, SimulatorState]]:
    clock = FixedClock(START)
    for gateway in clocked_gateway(backend, simulator[0].base_url, clock):
        yield gateway, clock, simulator[1]


def open_trace(gateway: Gateway, tenant: Tenant, **contract: Any) -> dict[str, Any]:
    body = {"name": "research agent", "budget": "1.00", "allowed_models": ["gpt-4o-mini"]}
    body.update(contract)
    with gateway.client() as http:
        response = http.post("/v1/traces", json=body, headers=tenant.headers())
    assert response.status_code == 200, response.text
    return dict(response.json())


def chat(
    gateway: Gateway, tenant: Tenant, trace_id: str, parent: str | None = None, **kw: Any
) -> Any:
    headers = {"X-Trace-Id": trace_id}
    if parent is not None:
        headers["X-Parent-Span-Id"] = parent
    return gateway.openai(tenant).chat.completions.with_raw_response.create(
        model=kw.pop("model", "gpt-4o-mini"),
        messages=MESSAGES,
        max_tokens=kw.pop("max_tokens", 40),
        extra_headers=headers,
        **kw,
    )


def refused(call: Any) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as error:
        call()
    return error.value


def read(gateway: Gateway, path: str, tenant: Tenant, **params: Any) -> Any:
    gateway.settle()
    with gateway.client() as http:
        return http.get(path, params=params, headers=tenant.headers())


def test_concurrent_calls_never_overshoot_the_trace_budget_counted_by_replaying_the_log(
    clocked,
) -> None:
    gateway, _, upstream = clocked
    tenant = gateway.tenant(balance="10.00")
    probe = chat(gateway, tenant, open_trace(gateway, tenant)["id"])
    estimate = Decimal(probe.headers["x-lg-estimated-cost"])
    budget = estimate * Decimal("3.5")  # room for three reservations, not four
    trace = open_trace(gateway, tenant, budget=format(budget, "f"))
    calls_before = len(upstream.requests)

    def one(_: int) -> tuple[int, str | None]:
        try:
            response = chat(gateway, tenant, trace["id"])
            return 200, response.headers["x-request-id"]
        except openai.APIStatusError as error:
            return error.status_code, error.body.get("code") if error.body else None

    with ThreadPoolExecutor(max_workers=12) as pool:
        outcomes = list(pool.map(one, range(12)))
    served = [outcome for outcome in outcomes if outcome[0] == 200]
    refusals = [outcome for outcome in outcomes if outcome[0] != 200]
    assert len(served) == 3, outcomes  # reservations decide: three fit, whatever the order
    assert refusals and all(o == (402, "trace_budget_exceeded") for o in refusals), outcomes
    assert len(upstream.requests) - calls_before == 3  # refused before any provider call

    # Replay the Account's log: at no point do holds plus charges pass the budget, and
    # what the trace was charged in the end is within it.
    limit = "trace:" + trace["id"]
    held: dict[str, Decimal] = {}
    in_use = posted = peak = Decimal(0)
    for event in gateway.services.app.events.get(account_id(tenant.project_id)):
        if isinstance(event, LimitsHeld) and limit in event.names:
            held[event.request_id] = event.amount
            in_use += event.amount
        elif isinstance(event, Account.ChargePosted) and event.request_id in held:
            in_use += event.amount - held.pop(event.request_id)
            posted += event.amount
        elif isinstance(event, Account.ReservationReleased) and event.request_id in held:
            in_use -= held.pop(event.request_id)
        peak = max(peak, in_use)
    assert peak <= budget and posted <= budget and not held
    assert posted > 0
    # Each refusal is in the audit log, under the trace.
    rows = audit_rows(gateway, tenant, trace_id=trace["id"], limit=100)
    assert sorted(r["error_code"] for r in rows if r["status"] == "rejected") == [
        "trace_budget_exceeded"
    ] * len(refusals)
    spent = gateway.openai(tenant).get(f"/traces/{trace['id']}", cast_to=dict)
    assert Decimal(spent["budget_spent"]) == posted and Decimal(spent["budget_reserved"]) == 0


def test_depth_model_and_parent_refusals_come_before_any_provider_call_and_are_recorded(
    clocked,
) -> None:
    gateway, _, upstream = clocked
    tenant = gateway.tenant()
    trace = open_trace(gateway, tenant, max_depth=1)
    first = chat(gateway, tenant, trace["id"]).headers["x-request-id"]
    calls = len(upstream.requests)

    too_deep = refused(lambda: chat(gateway, tenant, trace["id"], parent=first))
    assert too_deep.status_code == 400 and too_deep.body["code"] == "trace_depth_exceeded"
    assert too_deep.body["max_depth"] == 1 and too_deep.body["depth"] == 2
    other_model = refused(lambda: chat(gateway, tenant, trace["id"], model="gpt-4.1"))
    assert other_model.status_code == 403
    assert other_model.body["code"] == "trace_model_not_allowed"
    assert other_model.body["allowed"] == ["gpt-4o-mini"]
    stranger = refused(lambda: chat(gateway, tenant, trace["id"], parent="lg_req_" + "0" * 24))
    assert stranger.status_code == 400 and stranger.body["code"] == "trace_parent_not_found"
    assert len(upstream.requests) == calls  # no provider was called for any of them

    codes = [r["error_code"] for r in audit_rows(gateway, tenant, trace_id=trace["id"])]
    assert sorted(c for c in codes if c) == [
        "trace_depth_exceeded",
        "trace_model_not_allowed",
        "trace_parent_not_found",
    ]
    # A request in a trace obeys the project's rules too: an empty balance refuses it.
    poor = gateway.tenant(balance="0.000000001")
    poor_trace = open_trace(gateway, poor)
    broke = refused(lambda: chat(gateway, poor, poor_trace["id"]))
    assert broke.status_code == 402 and broke.body["code"] == "insufficient_balance"


def test_the_span_tree_rolls_cost_tokens_and_latency_up_each_subtree_and_exports_otlp(
    clocked,
) -> None:
    gateway, clock, _ = clocked
    tenant = gateway.tenant()
    trace = open_trace(
        gateway,
        tenant,
        max_depth=3,
        allowed_models=["gpt-4o-mini", "auto"],
        metadata={"ticket": "OPS-17"},
    )
    assert "gpt-4o-mini" in trace["resolved_models"] and trace["allowed_models"] == [
        "gpt-4o-mini",
        "auto",
    ]

    def span(parent: str | None = None) -> str:
        clock.set(clock.now() + timedelta(seconds=1))
        return str(chat(gateway, tenant, trace["id"], parent=parent).headers["x-request-id"])

    planner = span()
    researcher = span(planner)
    deep = span(researcher)
    writer = span(planner)
    sibling = span()
    cost = {r["request_id"]: Decimal(r["cost"]) for r in audit_rows(gateway, tenant)}

    tree = read(gateway, f"/v1/data/traces/{trace['id']}", tenant).json()
    root = tree["root"]
    assert [child["span_id"] for child in root["children"]] == [planner, sibling]
    planner_node = root["children"][0]
    assert [c["span_id"] for c in planner_node["children"]] == [researcher, writer]
    assert [c["span_id"] for c in planner_node["children"][0]["children"]] == [deep]
    assert planner_node["depth"] == 1 and planner_node["children"][0]["children"][0]["depth"] == 3
    subtree = planner_node["subtree"]
    assert subtree["spans"] == 4
    assert Decimal(subtree["cost"]) == sum(cost[s] for s in (planner, researcher, deep, writer))
    assert Decimal(root["subtree"]["cost"]) == sum(cost.values()) == Decimal(tree["cost"])
    assert subtree["input_tokens"] == sum(
        node["input_tokens"]
        for node in (
            planner_node,
            *planner_node["children"],
            planner_node["children"][0]["children"][0],
        )
    )
    assert subtree["latency_ms"] == 3000  # the planner's start to the writer's end (clock)
    assert all(
        node["model"] == "gpt-4o-mini" and node["provider"] == "openai" for node in root["children"]
    )
    assert planner_node["status"] == "completed" and planner_node["cost"] != "0"

    otlp = read(gateway, f"/v1/data/traces/{trace['id']}", tenant, format="otlp").json()
    [resource] = otlp["resourceSpans"]
    [scope] = resource["scopeSpans"]
    root_span = scope["spans"][0]
    assert len(root_span["traceId"]) == 32 and root_span["traceId"] == trace["id"][6:]
    assert all(
        len(s["spanId"]) == 16 and s["traceId"] == root_span["traceId"] for s in scope["spans"]
    )
    by_request = {
        next(
            a["value"]["stringValue"]
            for a in s["attributes"]
            if a["key"] == "ledgergate.request_id"
        ): s
        for s in scope["spans"][1:]
    }
    assert set(by_request) == {planner, researcher, deep, writer, sibling}
    assert by_request[deep]["parentSpanId"] == by_request[researcher]["spanId"]
    assert by_request[planner]["parentSpanId"] == root_span["spanId"]
    assert int(by_request[deep]["endTimeUnixNano"]) >= int(by_request[deep]["startTimeUnixNano"])
    # The real OTLP schema accepts it: ids in OTLP/JSON are hex, protobuf JSON wants base64.
    for item in scope["spans"]:
        for field in ("traceId", "spanId", "parentSpanId"):
            if field in item:
                item[field] = base64.b64encode(bytes.fromhex(item[field])).decode()
    message = json_format.Parse(json.dumps(otlp), ExportTraceServiceRequest())
    assert len(message.resource_spans[0].scope_spans[0].spans) == 6
    assert message.resource_spans[0].scope_spans[0].spans[0].trace_id.hex() == trace["id"][6:]


def test_closing_and_expiry_end_a_trace_at_once_and_are_recorded(clocked) -> None:
    gateway, clock, _ = clocked
    tenant = gateway.tenant()
    closing = open_trace(gateway, tenant)
    chat(gateway, tenant, closing["id"])
    with gateway.client() as http:
        closed = http.post(f"/v1/traces/{closing['id']}/close", headers=tenant.headers())
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    after_close = refused(lambda: chat(gateway, tenant, closing["id"]))
    assert after_close.status_code == 409 and after_close.body["code"] == "trace_closed"

    expiring = open_trace(gateway, tenant, expires_in_s=60)
    chat(gateway, tenant, expiring["id"])
    clock.set(clock.now() + timedelta(seconds=60))
    expired = refused(lambda: chat(gateway, tenant, expiring["id"]))
    assert expired.status_code == 409 and expired.body["code"] == "trace_closed"
    assert expired.body["reason"] == "expired"
    # Recorded when first observed (the refusal above), once.
    trace = gateway.services.app.repository.get(trace_aggregate_id(expiring["id"]))
    assert isinstance(trace, Trace) and trace.expired_at == START + timedelta(seconds=60)
    shown = gateway.openai(tenant).get(f"/traces/{expiring['id']}", cast_to=dict)
    assert shown["status"] == "expired" and shown["expired_at"] == "2026-12-01T09:01:00Z"
    assert len(list(gateway.services.app.events.get(trace_aggregate_id(expiring["id"])))) == 2

    listed = read(gateway, "/v1/data/traces", tenant).json()
    statuses = {t["id"]: t["status"] for t in listed["data"]}
    assert statuses == {closing["id"]: "closed", expiring["id"]: "expired"}
    only_closed = read(gateway, "/v1/data/traces", tenant, status="closed").json()
    assert [t["id"] for t in only_closed["data"]] == [closing["id"]]


def test_another_projects_key_and_ids_see_nothing_of_a_trace(clocked) -> None:
    gateway, _, upstream = clocked
    owner, stranger = gateway.tenant(), gateway.tenant()
    trace = open_trace(gateway, owner, name="secret merger analysis")
    span = chat(gateway, owner, trace["id"]).headers["x-request-id"]
    calls = len(upstream.requests)
    with gateway.client() as http:
        answers = [
            http.get(f"/v1/traces/{trace['id']}", headers=stranger.headers()),
            http.post(f"/v1/traces/{trace['id']}/close", headers=stranger.headers()),
            http.get(f"/v1/data/traces/{trace['id']}", headers=stranger.headers()),
            http.get(
                f"/v1/data/traces/{trace['id']}",
                params={"format": "otlp"},
                headers=stranger.headers(),
            ),
        ]
    for answer in answers:
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"]["code"] == "trace_not_found"
        assert "secret" not in answer.text and span not in answer.text
    joined = refused(lambda: chat(gateway, stranger, trace["id"]))
    assert joined.status_code == 404 and joined.body["code"] == "trace_not_found"
    joined_below = refused(lambda: chat(gateway, stranger, trace["id"], parent=span))
    assert joined_below.status_code == 404
    assert len(upstream.requests) == calls
    assert read(gateway, "/v1/data/traces", stranger).json()["data"] == []
    assert gateway.openai(owner).get(f"/traces/{trace['id']}", cast_to=dict)["status"] == "open"
    # The admin token reads one project's traces when it names it.
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with gateway.client() as http:
        listed = http.get(
            "/v1/data/traces", params={"project_id": str(owner.project_id)}, headers=admin
        ).json()
    assert [t["id"] for t in listed["data"]] == [trace["id"]]


@pytest.mark.parametrize(
    ("params", "param", "code"),
    [
        ({"since": "yesterday"}, "since", "invalid_request"),
        ({"until": "2026-12-01T00:00:00"}, "until", "invalid_request"),
        (
            {"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"},
            "since",
            "invalid_request",
        ),
        ({"status": "bogus"}, "status", "invalid_request"),
        ({"limit": "0"}, "limit", "invalid_request"),
        ({"cursor": "abc"}, "cursor", "invalid_cursor"),
        ({"min_position": "-1"}, "min_position", "invalid_request"),
    ],
)
def test_a_bad_traces_filter_is_a_clear_400_recorded_in_the_audit_log(
    clocked, params: dict[str, str], param: str, code: str
) -> None:
    gateway, _, _ = clocked
    tenant = gateway.tenant()
    answer = read(gateway, "/v1/data/traces", tenant, **params)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == code and answer.json()["error"]["param"] == param
    [row] = audit_rows(gateway, tenant)
    assert row["status"] == "rejected" and row["error_code"] == code


def test_a_bad_export_format_or_contract_is_refused_naming_the_field(clocked) -> None:
    gateway, _, _ = clocked
    tenant = gateway.tenant()
    trace = open_trace(gateway, tenant)
    answer = read(gateway, f"/v1/data/traces/{trace['id']}", tenant, format="xml")
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "format"
    bad_contracts = [
        ({"budget": 1.5}, "budget"),
        ({"budget": "-1"}, "budget"),
        ({"max_depth": 40}, "max_depth"),
        ({"expires_in_s": 10**9}, "expires_in_s"),
        ({"allowed_models": []}, "allowed_models"),
        ({"metadata": {"owner": "jane.doe@example.com"}}, "metadata.owner"),
        ({"name": "SE45 5000 0000 0583 9825 7466"}, "name"),
        ({"surprise": True}, "surprise"),
    ]
    with gateway.client() as http:
        for change, param in bad_contracts:
            body = {"name": "agent", "budget": "1", "allowed_models": ["gpt-4o-mini"], **change}
            response = http.post("/v1/traces", json=body, headers=tenant.headers())
            assert response.status_code == 400, (change, response.text)
            assert response.json()["error"]["param"] == param, response.text
            assert "jane.doe" not in response.text
        unknown = http.post(
            "/v1/traces",
            json={"name": "agent", "budget": "1", "allowed_models": ["no-such-model"]},
            headers=tenant.headers(),
        )
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    # Nothing of the refused personal data reached an event.
    for notification in gateway.services.app.recorder.select_notifications(start=1, limit=10_000):
        assert b"jane.doe" not in notification.state and b"5000 0000" not in notification.state


def test_the_span_is_recorded_on_the_request_and_embeddings_join_too(clocked, simulator) -> None:
    gateway, _, _ = clocked
    tenant = gateway.tenant()
    gateway.set_price(
        "text-embedding-3-small", "0.02", "0", effective_from=START - timedelta(days=30)
    )
    trace = open_trace(gateway, tenant, allowed_models=["gpt-4o-mini", "text-embedding-3-small"])
    parent = chat(gateway, tenant, trace["id"]).headers["x-request-id"]
    embedded = gateway.openai(tenant).embeddings.with_raw_response.create(
        model="text-embedding-3-small",
        input="quarterly ledger summary",
        extra_body={"trace_id": trace["id"]},
        extra_headers={"X-Parent-Span-Id": parent},
    )
    request_id = embedded.headers["x-request-id"]
    [joined] = [
        e
        for e in gateway.services.app.events.get(request_aggregate_id(request_id))
        if isinstance(e, SpanJoined)
    ]
    assert (joined.trace_id, joined.parent_span_id, joined.depth) == (trace["id"], parent, 2)
    tree = read(gateway, f"/v1/data/traces/{trace['id']}", tenant).json()
    [child] = tree["root"]["children"][0]["children"]
    assert child["span_id"] == request_id and child["endpoint"] == "embeddings"


@pytest.fixture
def screened_gateway(
    sqlite_env: dict[str, str], simulator: tuple[BackgroundServer, SimulatorState]
) -> Iterator[Gateway]:
    """A gateway whose projects have a PII policy: a prompt is screened, and so is what a
    trace keeps."""
    policies = json.dumps({"*": {"default": {"action": "redact"}}})
    yield from clocked_gateway(
        sqlite_env,
        simulator[0].base_url,
        FixedClock(START),
        LEDGERGATE_PII_PROJECT_POLICIES=policies,
    )


def test_trace_metadata_is_screened_by_the_projects_pii_policy_and_never_stored(
    screened_gateway: Gateway,
) -> None:
    gateway = screened_gateway
    tenant = gateway.tenant()
    phone = "+46 70 123 45 67"
    with gateway.client(timeout=300) as http:  # the first screening loads the PII engine
        refused_answer = http.post(
            "/v1/traces",
            json={
                "name": "support agent",
                "budget": "1",
                "allowed_models": ["gpt-4o-mini"],
                "metadata": {"contact": f"call me on {phone}"},
            },
            headers=tenant.headers(),
        )
    assert refused_answer.status_code == 400, refused_answer.text
    error = refused_answer.json()["error"]
    assert error["param"] == "metadata.contact" and "PHONE_NUMBER" in error["message"]
    assert phone not in refused_answer.text
    accepted = open_trace(gateway, tenant, metadata={"ticket": "OPS-17"})
    assert accepted["metadata"] == {"ticket": "OPS-17"}
    for notification in gateway.services.app.recorder.select_notifications(start=1, limit=10_000):
        assert b"123 45 67" not in notification.state
    [rejection] = [r for r in audit_rows(gateway, tenant) if r["status"] == "rejected"]
    assert rejection["error_code"] == "invalid_request" and phone not in json.dumps(rejection)


def test_auto_routes_within_the_trace_allowed_models_and_a_named_model_is_never_swapped(
    clocked,
) -> None:
    gateway, _, _ = clocked
    tenant = gateway.tenant()
    # (Without a trace auto samples among gpt-5-mini, gpt-5, gpt-4.1, …: the router's own
    # choice is random; tests/unit/test_trace_gateway_pieces.py shows it seeded.)
    trace = open_trace(gateway, tenant, allowed_models=["gpt-4.1"])
    for model in ("auto", "auto:fast", "auto:best", "auto", "auto"):
        served = chat(gateway, tenant, trace["id"], model=model)
        assert served.headers["x-lg-model"] == "gpt-4.1", model
    named = refused(lambda: chat(gateway, tenant, trace["id"], model="gpt-4o-mini"))
    assert named.status_code == 403 and named.body["code"] == "trace_model_not_allowed"


def test_the_sweep_records_the_expiry_of_a_trace_nobody_looked_at(clocked) -> None:
    gateway, clock, _ = clocked
    tenant = gateway.tenant()
    untouched = open_trace(gateway, tenant, expires_in_s=30)
    lasting = open_trace(gateway, tenant)
    gateway.settle()
    assert sweep_expired_traces(gateway.services) == []  # nothing due yet
    clock.set(clock.now() + timedelta(seconds=31))
    gateway.settle()
    assert sweep_expired_traces(gateway.services) == [untouched["id"]]
    trace = gateway.services.app.repository.get(trace_aggregate_id(untouched["id"]))
    assert isinstance(trace, Trace) and trace.expired_at == START + timedelta(seconds=31)
    gateway.settle()
    assert sweep_expired_traces(gateway.services) == []  # recorded once
    listed = read(gateway, "/v1/data/traces", tenant, status="expired").json()["data"]
    assert [t["id"] for t in listed] == [untouched["id"]] and listed[0]["expired_at"]
    assert (
        read(gateway, "/v1/data/traces", tenant, status="open").json()["data"][0]["id"]
        == (lasting["id"])
    )
