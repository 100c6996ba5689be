"""Metrics, traces, JSON access logs, /health and /ready: over real HTTP, with the real openai
SDK in front of the simulated OpenAI upstream."""

from __future__ import annotations

import io
import json
import logging
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import psycopg
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from gateway.bootstrap import build_services
from gateway.config import Settings
from gateway.http.app import create_app
from gateway.observability.core import Observability
from gateway.observability.logs import JsonFormatter, TraceContextFilter
from gateway.observability.metrics import GatewayMetrics
from gateway.serving import BackgroundServer
from gateway.simulator import SimulatorState
from projections.runner import ProjectionRunner, default_views
from tests.support.harness import ADMIN_TOKEN, Gateway, start_gateway
from tests.support.postgres import ADMIN_URL, temporary_database

CHAT = "/v1/chat/completions"
PROMPT = "Tell me about the weather in Uppsala, secret-marker-7f3a"
CLIENT_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN_ID = "00f067aa0ba902b7"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition, keyed by (name, sorted labels)."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    return sum(
        v
        for (sample_name, sample_labels), v in found.items()
        if sample_name == name and set(labels.items()) <= set(sample_labels)
    )


def scrape(gateway: Gateway, **headers: str) -> httpx.Response:
    with gateway.client() as http:
        return http.get("/metrics", headers=headers)


@pytest.fixture
def traced_gateway(
    tmp_path: Path, simulator: tuple[BackgroundServer, SimulatorState]
) -> Iterator[tuple[Gateway, InMemorySpanExporter]]:
    """A gateway whose tracer exports to memory (as an OTLP endpoint would, without one)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = Settings.from_env(
        {
            "LEDGERGATE_ADMIN_TOKEN": ADMIN_TOKEN,
            "LEDGERGATE_PII_WARM_AT_START": "0",
            "LEDGERGATE_DATA_DIR": str(tmp_path / "data"),
            "LEDGERGATE_OPENAI_BASE_URL": simulator[0].base_url + "/v1",
            "LEDGERGATE_OPENAI_API_KEY": "sk-test-upstream-secret",
        }
    )
    services = build_services(settings)
    services.observability = Observability.for_services(services, tracer_provider=provider)
    server = BackgroundServer(create_app(settings, services)).start()
    gateway = Gateway(server=server, services=services, settings=settings)
    try:
        gateway.set_price("gpt-4o-mini", "0.15", "0.60")
        yield gateway, exporter
    finally:
        server.stop()


def test_metrics_move_with_traffic_and_carry_only_bounded_labels(sqlite_gateway: Gateway) -> None:
    tenant = sqlite_gateway.tenant()
    client = sqlite_gateway.openai(tenant)
    messages = [{"role": "user", "content": PROMPT}]
    client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    for _chunk in client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, stream=True
    ):
        pass
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            base_url=sqlite_gateway.base_url + "/v1", api_key="lg_live_nope", max_retries=0
        ).chat.completions.create(model="gpt-4o-mini", messages=messages)
    # A model name a client makes up never becomes a label value.
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="made-up-model-xyz", messages=messages)
    sqlite_gateway.settle()

    response = scrape(sqlite_gateway)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    ok = {"route": CHAT, "status": "200", "model": "gpt-4o-mini", "provider": "openai"}
    assert value(found, "ledgergate_requests_total", **ok, key_source="managed") == 2
    assert value(found, "ledgergate_requests_total", route=CHAT, status="401", model="none") == 1
    assert value(found, "ledgergate_requests_total", route=CHAT, status="404") == 1
    assert value(found, "ledgergate_request_duration_seconds_count", route=CHAT) == 4
    assert value(found, "ledgergate_request_duration_seconds_sum", route=CHAT) > 0
    assert value(found, "ledgergate_overhead_seconds_count", route=CHAT, provider="openai") == 2
    assert value(found, "ledgergate_upstream_duration_seconds_count", provider="openai") == 2
    assert value(found, "ledgergate_upstream_duration_seconds_count", outcome="ok") == 2
    assert value(found, "ledgergate_tokens_total", provider="openai", kind="input") > 0
    assert value(found, "ledgergate_tokens_total", model="gpt-4o-mini", kind="output") > 0
    assert value(found, "ledgergate_provider_cost_total", provider="openai", currency="USD") > 0
    assert value(found, "ledgergate_writer_batch_commands_count") > 0
    assert value(found, "ledgergate_writer_commit_seconds_count") > 0
    assert value(found, "ledgergate_cache_lookups_total", route=CHAT, outcome="miss") == 2
    assert ("ledgergate_projection_lag_positions", ()) in found
    assert value(found, "ledgergate_event_log_head_position") >= value(
        found, "ledgergate_projection_position"
    )
    assert value(found, "ledgergate_breaker_state", provider="openai", state="closed") >= 1
    # Bounded: no request id, key, project, actor, prompt or made-up model in any label.
    text = response.text
    for secret in (tenant.api_key, str(tenant.project_id), "alice", "made-up-model", "lg_req_"):
        assert secret not in text
    assert "Uppsala" not in text and "secret-marker" not in text


def test_metrics_need_the_token_when_one_is_configured(
    tmp_path: Path, simulator: tuple[BackgroundServer, SimulatorState]
) -> None:
    gateway = start_gateway(
        {
            "LEDGERGATE_DATA_DIR": str(tmp_path / "data"),
            "LEDGERGATE_METRICS_TOKEN": "metrics-token-1234",
        }
    )
    try:
        assert scrape(gateway).status_code == 401
        assert scrape(gateway, Authorization="Bearer wrong").json()["error"]["code"] == (
            "invalid_metrics_token"
        )
        good = scrape(gateway, Authorization="Bearer metrics-token-1234")
        assert good.status_code == 200 and "ledgergate_requests_total" in good.text
    finally:
        gateway.server.stop()


def test_one_request_is_one_trace_its_spans_in_order_and_the_client_traceparent_continued(
    traced_gateway: tuple[Gateway, InMemorySpanExporter],
) -> None:
    gateway, exporter = traced_gateway
    tenant = gateway.tenant()
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(TraceContextFilter())
    ledgergate_log = logging.getLogger("ledgergate")
    ledgergate_log.addHandler(handler)
    previous_level = ledgergate_log.level
    ledgergate_log.setLevel(logging.INFO)
    exporter.clear()
    try:
        raw = gateway.openai(tenant, timeout=120).chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"I am Anna Svensson. {PROMPT}"}],
            extra_headers={"traceparent": f"00-{CLIENT_TRACE_ID}-{CLIENT_SPAN_ID}-01"},
            extra_body={"pii_policy": {"action": "pseudonymize", "rehydrate_response": True}},
        )
        request_id = raw.headers["x-request-id"]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
            s.name == f"POST {CHAT}" for s in exporter.get_finished_spans()
        ):
            time.sleep(0.02)
    finally:
        ledgergate_log.removeHandler(handler)
        ledgergate_log.setLevel(previous_level)

    spans = [
        s for s in exporter.get_finished_spans() if s.context.trace_id == int(CLIENT_TRACE_ID, 16)
    ]
    root = next(s for s in spans if s.name == f"POST {CHAT}")
    # The client's trace continues: same trace id, our root's parent is the client's span.
    assert root.parent is not None and root.parent.span_id == int(CLIENT_SPAN_ID, 16)
    assert root.attributes["ledgergate.request_id"] == request_id
    assert root.attributes["ledgergate.model"] == "gpt-4o-mini"
    assert root.attributes["ledgergate.provider"] == "openai"
    assert root.attributes["http.response.status_code"] == 200
    assert root.attributes["ledgergate.project_id"] == str(tenant.project_id)
    children = sorted(
        (s for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id),
        key=lambda s: s.start_time,
    )
    names = [s.name for s in children]
    assert names == [
        "auth",
        "pii screening",
        "routing",
        "admission commit",
        "upstream attempt",
        "settlement commit",
    ]
    by_name = {s.name: s for s in children}
    attempt = by_name["upstream attempt"].attributes
    assert (
        attempt["ledgergate.provider"] == "openai" and attempt["ledgergate.model"] == "gpt-4o-mini"
    )
    assert attempt["ledgergate.outcome"] == "ok" and attempt["ledgergate.attempt"] == 1
    assert by_name["admission commit"].attributes["ledgergate.request_id"] == request_id
    assert by_name["settlement commit"].attributes["ledgergate.command"] == "CompleteRequest"
    assert by_name["pii screening"].attributes["ledgergate.entities"] >= 1
    assert by_name["routing"].attributes["ledgergate.model"] == "gpt-4o-mini"
    # The trace id is in the response header too.
    assert raw.headers["traceresponse"].split("-")[1] == CLIENT_TRACE_ID
    # No span attribute holds the prompt, a PII value or a key.
    attributes = json.dumps([dict(s.attributes or {}) for s in spans])
    for secret in ("Anna", "Svensson", "Uppsala", "secret-marker", tenant.api_key, "sk-test"):
        assert secret not in attributes

    # The access line: JSON, with the request's facts and the trace id; nothing else.
    parsed = [json.loads(line) for line in lines.getvalue().splitlines() if line.strip()]
    access = [p for p in parsed if p.get("event") == "access" and p.get("route") == CHAT]
    assert len(access) == 1
    line = access[0]
    assert line["request_id"] == request_id
    assert line["project_id"] == str(tenant.project_id)
    assert line["status"] == 200 and line["model"] == "gpt-4o-mini" and line["provider"] == "openai"
    assert line["latency_ms"] > 0 and isinstance(line["overhead_ms"], int)
    assert line["trace_id"] == CLIENT_TRACE_ID and line["level"] == "INFO" and line["ts"]
    text = lines.getvalue()
    for secret in ("Anna", "Svensson", "Uppsala", "secret-marker", tenant.api_key, "sk-test"):
        assert secret not in text


def test_without_an_otlp_endpoint_tracing_is_off_and_logs_still_carry_the_client_trace_id(
    sqlite_gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    assert sqlite_gateway.services.observability.tracer is None
    tenant = sqlite_gateway.tenant()
    caplog.set_level(logging.INFO, logger="ledgergate.access")
    raw = sqlite_gateway.openai(tenant).chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"traceparent": f"00-{CLIENT_TRACE_ID}-{CLIENT_SPAN_ID}-01"},
    )
    assert "traceresponse" not in raw.headers
    # The access line is written once the answer's last byte has gone out, which can be a
    # moment after the client has read it: wait for it, boundedly.
    deadline = time.monotonic() + 5.0
    while True:
        records = [r for r in caplog.records if getattr(r, "event", None) == "access"]
        if records or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert records and records[-1].trace_id == CLIENT_TRACE_ID  # type: ignore[attr-defined]
    assert records[-1].request_id == raw.headers["x-request-id"]  # type: ignore[attr-defined]


def test_health_reveals_nothing_and_ready_is_ready(sqlite_gateway: Gateway) -> None:
    with sqlite_gateway.client() as http:
        health = http.get("/health")
        ready = http.get("/ready")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready"
    assert {c["check"] for c in body["checks"]} == {"event_store", "read_store", "projections"}


def test_ready_is_503_while_the_read_models_lag_and_200_once_the_worker_caught_up(
    tmp_path: Path,
) -> None:
    env = {
        "LEDGERGATE_DATA_DIR": str(tmp_path / "data"),
        "LEDGERGATE_RUN_PROJECTIONS": "0",  # a worker writes the views: none runs yet
        "LEDGERGATE_READY_LAG_POSITIONS_MAX": "3",
    }
    gateway = start_gateway(env)
    try:
        gateway.tenant()  # a few more events past the catalog prices
        with gateway.client() as http:
            lagging = http.get("/ready")
        assert lagging.status_code == 503
        check = next(c for c in lagging.json()["checks"] if c["check"] == "projections")
        assert not check["ok"] and check["lag_positions"] > 3 and "behind" in check["reason"]
        # The projection worker (`ledgergate projections run`) catches the views up.
        worker = ProjectionRunner(gateway.services.app, gateway.services.store, default_views())
        worker.catch_up()
        with gateway.client() as http:
            assert http.get("/ready").status_code == 200
    finally:
        gateway.server.stop()


@pytest.mark.postgres
def test_ready_is_503_when_the_postgres_store_is_unreachable() -> None:
    with temporary_database("lg_ready") as url:
        database = url.rpartition("/")[2]
        gateway = start_gateway({"LEDGERGATE_DATABASE_URL": url})
        try:
            with gateway.client() as http:
                assert http.get("/ready").status_code == 200
            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (database,),
                )
            with gateway.client(timeout=30) as http:
                down = http.get("/ready")
                health = http.get("/health")
            assert down.status_code == 503
            failing = {c["check"] for c in down.json()["checks"] if not c["ok"]}
            assert "event_store" in failing or "read_store" in failing
            assert health.status_code == 200  # alive, just not ready
        finally:
            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
            gateway.server.stop()


def test_model_labels_come_from_the_catalog_or_are_other() -> None:
    metrics = GatewayMetrics(model_names=["gpt-4o-mini"])
    assert metrics.model_label("gpt-4o-mini") == "gpt-4o-mini"
    assert metrics.model_label("anything a client typed " + secrets.token_hex(4)) == "other"
    assert metrics.model_label(None) == "none"
    assert metrics.provider_label("openai") == "openai"
    assert metrics.provider_label("evil\nprovider") == "other"
