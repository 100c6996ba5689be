"""Hostile strings in every string field of every endpoint, on PostgreSQL: a NUL, a lone
surrogate, a 1 MB string and a value nested past the depth bound go into each body field,
query parameter, path parameter and header the gateway reads (chat, embeddings, reads,
admin). No answer may be a 5xx, and afterwards every view must be at the head of the log
with nothing dead-lettered: the edge refused what storage cannot hold, so no view had to
skip anything. Bounded: one request per (field, value), about a minute on this machine."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from projections.runner import list_dead_letters
from tests.support.harness import ADMIN_TOKEN, Gateway, Tenant, simulated_gateway

NUL = "gpt\x00x"
SURROGATE = "a\ud800b"
MEGABYTE = "m" * 1_000_000
DEEP: Any = "x"
for _ in range(600):
    DEEP = [DEEP]
BODY_VALUES = {"nul": NUL, "surrogate": SURROGATE, "megabyte": MEGABYTE, "deep": DEEP}
# Query and path values travel in the URL: NUL percent-encoded, a surrogate as the bytes a
# broken encoder would send, a long value up to what the HTTP server accepts.
URL_VALUES = {"nul": "%00x", "surrogate": "%ED%A0%80", "long": "q" * 60_000}
HEADER_VALUES = {"control": "alice\tbob\x7f", "long": "h" * 8_000, "latin1": "ali\xe9"}

CHAT = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}], "name": "n"},
    ],
    "user": "alice",
    "trace_id": "trace-1",
    "conversation_id": "conv-1",
    "stop": ["x"],
    "metadata": {"k": "v"},
    "response_format": {"type": "text"},
    "routing_preferences": {"compliance": "unrestricted"},
    "pii_policy": {"enabled": False, "action": "pseudonymize"},
    "max_tokens": 5,
}
CHAT_FIELDS = [
    ("model",),
    ("messages", 0, "content"),
    ("messages", 0, "role"),
    ("messages", 1, "content", 0, "text"),
    ("messages", 1, "content", 0, "type"),
    ("messages", 1, "name"),
    ("user",),
    ("trace_id",),
    ("conversation_id",),
    ("stop", 0),
    ("metadata", "k"),
    ("response_format", "type"),
    ("routing_preferences", "compliance"),
    ("pii_policy", "action"),
]
EMBEDDINGS = {"model": "text-embedding-3-small", "input": ["a", "b"], "user": "alice"}
EMBEDDINGS_FIELDS = [("model",), ("input", 0), ("user",), ("encoding_format",)]


def _set(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    target: Any = changed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return changed


@pytest.fixture(scope="module")
def running(tmp_path_factory, postgres_database) -> Iterator[tuple[Gateway, Tenant]]:
    import secrets

    from tests.support.postgres import create_schema

    url = create_schema(postgres_database, "fuzz_" + secrets.token_hex(4))
    with simulated_gateway(
        {
            "LEDGERGATE_DATABASE_URL": url,
            "LEDGERGATE_DATA_DIR": str(tmp_path_factory.mktemp("fuzz")),
        }
    ) as gateway:
        yield gateway, gateway.tenant(balance="50.00")


def _send(http: httpx.Client, method: str, url: str, **kwargs: Any) -> int:
    try:
        return http.request(method, url, **kwargs).status_code
    except httpx.RemoteProtocolError:
        return 431  # the HTTP server refused an oversized request line or header outright


def test_hostile_strings_in_every_field_never_5xx_and_every_view_stays_at_the_head(
    running,
) -> None:
    gateway, tenant = running
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    project = str(tenant.project_id)
    key = str(tenant.key_id)
    statuses: dict[str, int] = {}

    def post(name: str, path: str, body: Any, headers: dict[str, str]) -> None:
        raw = json.dumps(body).encode()  # keeps NUL and lone surrogates as \\u escapes
        statuses[name] = _send(
            http,
            "POST",
            path,
            content=raw,
            headers={**headers, "Content-Type": "application/json"},
        )

    admin_bodies: list[tuple[str, dict[str, Any]]] = [
        ("/v1/admin/projects", {"name": "p", "tier": "unrestricted", "currency": "USD"}),
        ("/v1/admin/keys", {"project_id": project}),
        (f"/v1/admin/keys/{key}/revoke", {"reason": "r"}),
        ("/v1/admin/topups", {"project_id": project, "amount": "1", "currency": "USD",
                              "reference": "ref"}),
        ("/v1/admin/prices", {"model": "gpt-4o-mini", "input_per_mtok": "1",
                              "output_per_mtok": "1", "currency": "USD",
                              "effective_from": "2020-01-01T00:00:00Z"}),
        ("/v1/admin/fx-rates", {"base": "EUR", "quote": "USD", "rate": "1.1",
                                "effective_from": "2020-01-01T00:00:00Z"}),
        (f"/v1/admin/projects/{project}/plan", {"plan": "pro"}),
        (f"/v1/admin/projects/{project}/tier", {"tier": "unrestricted"}),
        (f"/v1/admin/projects/{project}/fee", {"fee_rate": "0.05"}),
        (f"/v1/admin/projects/{project}/provider-keys", {"provider": "openai",
                                                         "api_key": "sk-x"}),
        (f"/v1/admin/projects/{project}/models", {"name": "m1", "provider": "openai",
                                                  "upstream_id": "gpt-4o-mini"}),
        (f"/v1/admin/projects/{project}/endpoints", {"provider": "openai", "name": "e",
                                                     "base_url": "http://127.0.0.1:9/v1",
                                                     "models": ["m1"]}),
    ]  # fmt: skip
    reads: list[tuple[str, list[str]]] = [
        ("/v1/data/audit", ["actor_id", "model", "status", "since", "until", "cursor", "limit"]),
        ("/v1/billing/usage", ["group_by", "since", "until"]),
        ("/v1/data/pricing", ["model", "at", "currency"]),
        ("/v1/billing/balance", ["min_position"]),
        ("/v1/models", ["compliance"]),
        ("/v1/models/leaderboard", ["compliance"]),
        ("/v1/billing/reconciliations", ["month", "provider", "limit"]),
        ("/v1/admin/projections/dead-letters", ["view", "limit"]),
    ]
    path_reads = ["/v1/data/audit/{}", "/v1/models/{}", "/v1/billing/reconciliations/{}"]

    with httpx.Client(base_url=gateway.base_url, timeout=60) as http:
        for label, value in BODY_VALUES.items():
            for field in CHAT_FIELDS:
                post(f"chat {field} {label}", "/v1/chat/completions", _set(CHAT, field, value),
                     tenant.headers())  # fmt: skip
            for field in EMBEDDINGS_FIELDS:
                post(f"embeddings {field} {label}", "/v1/embeddings",
                     _set(EMBEDDINGS, field, value), tenant.headers())  # fmt: skip
            for path, body in admin_bodies:
                for name in body:
                    post(f"admin {path} {name} {label}", path, _set(body, (name,), value), admin)
        for label, value in URL_VALUES.items():
            for path, names in reads:
                headers = admin if "admin" in path or "reconciliations" in path else {}
                for name in names:
                    statuses[f"read {path}?{name} {label}"] = _send(
                        http, "GET", f"{path}?{name}={value}",
                        headers={**tenant.headers(), **headers},
                    )  # fmt: skip
            for template in path_reads:
                headers = admin if "reconciliations" in template else tenant.headers()
                statuses[f"path {template} {label}"] = _send(
                    http, "GET", template.format(value), headers=headers
                )
        for label, value in HEADER_VALUES.items():
            for header in ("X-User-Id", "X-Trace-Id", "Idempotency-Key"):
                headers = {**tenant.headers(), header: value}
                raw_headers = {k: v.encode("latin-1") for k, v in headers.items()}
                statuses[f"header {header} {label}"] = _send(
                    http, "POST", "/v1/chat/completions", json=CHAT, headers=raw_headers
                )
                statuses[f"header {header} {label} read"] = _send(
                    http, "GET", "/v1/data/audit", headers=raw_headers
                )
        statuses["chat quoted model in path"] = _send(
            http, "GET", "/v1/models/" + quote("gpt\u0000", safe=""), headers=tenant.headers()
        )

    server_errors = {name: status for name, status in statuses.items() if status >= 500}
    assert server_errors == {}
    # Most hostile values are refused; the point is that none got through to break a view.
    assert sum(1 for status in statuses.values() if status == 400) > len(statuses) // 2
    gateway.settle()
    head = gateway.services.app.recorder.max_notification_id() or 0
    positions = gateway.services.runner.positions()
    assert set(positions.values()) == {head}, positions
    assert list_dead_letters(gateway.services.store) == []
