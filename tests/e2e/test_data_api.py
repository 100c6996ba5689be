"""The data API of issue 12: `/v1/data/routing`, `/v1/data/pii`, `/v1/data/models`,
`/v1/data/events` (NDJSON) and the price history of `/v1/data/pricing`. Every read is the
key's project's own (another project's key and ids see nothing of it), pages by cursor, and
a bad filter is a clear 400 the audit log records. Real HTTP, the real openai SDK, the
simulated OpenAI-format upstream, on SQLite and the real PostgreSQL."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import openai
import pytest

from tests.support.harness import ADMIN_TOKEN, Gateway, Tenant, custom_model

MESSAGES = [{"role": "user", "content": "What is double-entry bookkeeping?"}]
IBAN = "SE45 5000 0000 0583 9825 7466"
PII_MESSAGES = [{"role": "user", "content": f"My IBAN is {IBAN}, move 20 EUR please."}]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def get(gateway: Gateway, path: str, headers: dict[str, str], **params: Any) -> Any:
    with gateway.client() as http:
        return http.get(path, params=params, headers=headers)


def events(gateway: Gateway, tenant: Tenant, **params: Any) -> list[dict[str, Any]]:
    response = get(gateway, "/v1/data/events", tenant.headers(), **params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


def test_each_data_read_is_the_projects_own_and_pages_by_cursor(gateway: Gateway) -> None:
    tenant, other = gateway.tenant(), gateway.tenant()
    client = gateway.openai(tenant)
    mine = [
        client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES
        ).headers["x-request-id"]
        for _ in range(2)
    ]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=PII_MESSAGES,
            extra_body={"pii_policy": {"action": "block"}},
        )
    theirs = (
        gateway.openai(other)
        .chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
        .headers["x-request-id"]
    )
    gateway.settle()

    # Routing: candidates with scores, the chosen target, the attempt and its outcome.
    routing = get(gateway, "/v1/data/routing", tenant.headers()).json()
    assert [row["request_id"] for row in routing["data"]] == mine
    for row in routing["data"]:
        assert row["chosen"]["model"] == "gpt-4o-mini" and row["chosen"]["provider"] == "openai"
        assert row["candidates"] and all(c["score"] is not None for c in row["candidates"])
        assert row["reason"] and row["failovers"] == 0
        assert [a["attempt"] for a in row["attempts"]] == [1]
        assert row["outcome"]["status"] == "completed"
    assert {b["endpoint"] for b in routing["breakers"]} <= {
        a["endpoint"] for row in routing["data"] for a in row["attempts"]
    }
    first = get(gateway, "/v1/data/routing", tenant.headers(), limit=1).json()
    assert [row["request_id"] for row in first["data"]] == mine[:1]
    second = get(
        gateway, "/v1/data/routing", tenant.headers(), limit=1, cursor=first["next_cursor"]
    ).json()
    assert [row["request_id"] for row in second["data"]] == mine[1:]
    assert second["next_cursor"] is None
    theirs_routing = get(gateway, "/v1/data/routing", other.headers()).json()["data"]
    assert [row["request_id"] for row in theirs_routing] == [theirs]

    # PII: the decision with entity types and counts, never the value.
    pii = get(gateway, "/v1/data/pii", tenant.headers())
    assert IBAN not in pii.text and IBAN.replace(" ", "") not in pii.text
    (decision,) = pii.json()["data"]
    assert decision["action"] == "block" and decision["blocked"] is True
    assert decision["entity_counts"].get("IBAN_CODE", 0) >= 1
    assert decision["latency_ms"] is not None and decision["status"] == "rejected"
    assert get(gateway, "/v1/data/pii", other.headers()).json()["data"] == []

    # Model health of this project's own requests only.
    (health,) = get(gateway, "/v1/data/models", tenant.headers()).json()["data"]
    assert health["model"] == "gpt-4o-mini" and health["attempts"] == 2
    assert health["success_rate"] == 1.0 and health["breaker_state"] == "closed"
    assert health["latency_ms_p50"] is not None and health["latency_ms_p95"] is not None
    assert health["last_error_class"] is None
    (their_health,) = get(gateway, "/v1/data/models", other.headers()).json()["data"]
    assert their_health["attempts"] == 1

    # Events: this project's own, in log order, screened; pages join up exactly.
    feed = events(gateway, tenant)
    positions = [event["position"] for event in feed]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    types = {event["type"] for event in feed}
    assert {"Project.Created", "ApiKey.Created", "Account.Opened", "Request.Received",
            "Request.RouteDecided", "Request.Completed", "Request.PiiScreened"} <= types  # fmt: skip
    text = json.dumps(feed)
    for withheld in (tenant.api_key, IBAN, str(other.project_id), theirs, "key_hash", "client_ip"):
        assert withheld not in text
    assert "prompt_sha256" not in text and "completion_sha256" not in text
    paged: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        response = get(gateway, "/v1/data/events", tenant.headers(), **params)
        paged.extend(json.loads(line) for line in response.text.splitlines())
        cursor = response.headers.get("x-lg-next-cursor")
        if cursor is None:
            break
    assert paged == feed
    completed = events(gateway, tenant, type="Request.Completed")
    assert [event["type"] for event in completed] == ["Request.Completed"] * 2
    their_feed = events(gateway, other)
    assert not {e["aggregate_id"] for e in their_feed} & {e["aggregate_id"] for e in feed}
    # The admin token reads one project's feed by name.
    as_admin = get(gateway, "/v1/data/events", ADMIN, project_id=str(tenant.project_id))
    assert [json.loads(line) for line in as_admin.text.splitlines()] == feed


def test_price_history_covers_shipped_and_own_custom_models_only(gateway: Gateway) -> None:
    tenant, other = gateway.tenant(), gateway.tenant()
    history = get(
        gateway, "/v1/data/pricing", tenant.headers(), model="gpt-4o-mini", history="true"
    ).json()
    assert history["object"] == "pricing_history"
    assert Decimal("0.15") in {Decimal(p["input_per_mtok"]) for p in history["prices"]}
    assert history["fx"] == []  # USD prices for a USD project: no rate involved
    entry = custom_model("acme-private", "1.25", "2.50")
    with gateway.client() as http:
        added = http.post(
            f"/v1/admin/projects/{tenant.project_id}/models", json=entry, headers=ADMIN
        )
    assert added.status_code == 200, added.text
    gateway.settle()
    own = get(gateway, "/v1/data/pricing", tenant.headers(), model="acme-private", history="true")
    assert own.status_code == 200, own.text
    assert [Decimal(p["input_per_mtok"]) for p in own.json()["prices"]] == [Decimal("1.25")]
    refused = get(
        gateway, "/v1/data/pricing", other.headers(), model="acme-private", history="true"
    )
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "price_not_found"
    assert "1.25" not in refused.text and "acme" not in refused.json()["error"].get("param", "")


BAD_FILTERS = [
    ("/v1/data/routing", {"since": "yesterday"}, "since"),
    ("/v1/data/routing", {"cursor": "abc"}, "cursor"),
    ("/v1/data/routing", {"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
    ("/v1/data/pii", {"limit": "0"}, "limit"),
    ("/v1/data/pii", {"until": "not a time"}, "until"),
    ("/v1/data/models", {"model": "no spaces allowed"}, "model"),
    ("/v1/data/models", {"since": "2026-13-01"}, "since"),
    ("/v1/data/events", {"type": "drop table"}, "type"),
    ("/v1/data/events", {"cursor": "-1"}, "cursor"),
    ("/v1/data/events", {"limit": "100000"}, "limit"),
    ("/v1/data/pricing", {"model": "gpt-4o-mini", "history": "maybe"}, "history"),
]  # fmt: skip


def test_bad_filters_are_clear_400s_and_recorded(gateway: Gateway) -> None:
    tenant, other = gateway.tenant(), gateway.tenant()
    for path, params, param in BAD_FILTERS:
        response = get(gateway, path, tenant.headers(), **params)
        assert response.status_code == 400, (path, params, response.text)
        error = response.json()["error"]
        assert error["param"] == param and error["code"] in ("invalid_request", "invalid_cursor")
    gateway.settle()
    with gateway.client() as http:
        refused = http.get(
            "/v1/data/audit", params={"status": "rejected", "limit": 100}, headers=tenant.headers()
        ).json()["data"]
    recorded = sorted(r["error_message"] for r in refused)
    assert len(recorded) == len(BAD_FILTERS)
    for path, _, param in BAD_FILTERS:
        assert any(
            m.startswith(f"GET {path} refused") and f"(param {param})" in m for m in recorded
        )
    with gateway.client() as http:
        theirs = http.get(
            "/v1/data/audit", params={"status": "rejected"}, headers=other.headers()
        ).json()["data"]
    assert theirs == []
