"""The response cache finished (issue 14) end to end: a project's default mode and sharing
across keys set by admin command (admin API and CLI), and the semantic cache, through the
real openai SDK over real HTTP to the simulated OpenAI upstream (whose embeddings are hashed
word and character n-grams: paraphrases are close, unrelated texts are not), on SQLite and
on the real PostgreSQL."""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import psycopg
import pytest

from domain import commands as c
from domain.cache_policy import ProjectCachePolicy
from gateway.cache_cli import run_cache_command
from gateway.cli import build_parser
from gateway.config import Settings
from gateway.response_cache import response_cache
from gateway.serving import BackgroundServer
from gateway.simulator import SimulatorState
from tests.e2e.helpers import (
    TravelledClock,
    audit_record,
    cached_chat,
    cached_stream,
    scan_for_plaintext,
)
from tests.support.harness import (
    ADMIN_TOKEN,
    GPT_4O_MINI_PRICE,
    Gateway,
    Tenant,
    openai_upstream_env,
    running_gateway,
    start_gateway,
)

SERVER_SECRET = "fcache-test-server-secret-0123456789"
QUESTION = [{"role": "user", "content": "What is the capital city of Sweden?"}]
PARAPHRASE = [{"role": "user", "content": "Tell me the capital city of Sweden."}]
UNRELATED = [{"role": "user", "content": "How tall is Mount Everest?"}]
REPLY = "Stockholm-zebra-quartz is the capital"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def cache_gateway(
    backend: dict[str, str], simulator: tuple[BackgroundServer, SimulatorState]
) -> Iterator[Gateway]:
    """A gateway with the server secret a sharing project's secret derives from."""
    simulator[1].reply = REPLY
    with running_gateway(
        {
            **backend,
            **openai_upstream_env(simulator[0].base_url),
            "LEDGERGATE_SECRET_KEY": SERVER_SECRET,
        },
        prices=(GPT_4O_MINI_PRICE, ("text-embedding-3-small", "0.02", "0")),
    ) as gateway:
        yield gateway


ask = partial(cached_chat, messages=QUESTION)


def chat_calls(state: SimulatorState) -> int:
    return len(state.requests)


def embedding_calls(state: SimulatorState) -> int:
    return len(state.embedding_requests)


def second_key(gateway: Gateway, tenant: Tenant) -> Tenant:
    key = gateway.execute(c.CreateApiKey(project_id=tenant.project_id))
    return Tenant(tenant.project_id, key["api_key"], UUID(key["key_id"]), tenant.currency)


def set_policy(gateway: Gateway, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    with gateway.client() as http:
        response = http.post(
            f"/v1/admin/projects/{tenant.project_id}/cache-policy", headers=ADMIN, json=fields
        )
    assert response.status_code == 200, response.text
    gateway.settle()
    return dict(response.json())


# --- the project's default mode ------------------------------------------------------------


def test_a_project_default_mode_set_by_the_admin_api_applies_when_the_request_names_none(
    cache_gateway: Gateway, simulator: tuple[BackgroundServer, SimulatorState]
) -> None:
    state = simulator[1]
    tenant = cache_gateway.tenant()
    client = cache_gateway.openai(tenant)
    # `auto` (the default default): a sampled request is never cached.
    assert ask(client, temperature=0.8).headers["x-lg-cache"] == "miss"
    assert ask(client, temperature=0.8).headers["x-lg-cache"] == "miss"
    assert chat_calls(state) == 2
    policy = set_policy(cache_gateway, tenant, default_mode="always")
    assert policy["default_mode"] == "always" and policy["share_across_keys"] is False
    assert ask(client, temperature=0.8).headers["x-lg-cache"] == "miss"
    assert ask(client, temperature=0.8).headers["x-lg-cache"] == "hit"
    assert chat_calls(state) == 3
    # The request's own header wins over the project's default.
    assert ask(client, {"X-LG-Use-Cache": "never"}, temperature=0.8).headers["x-lg-cache"] == (
        "bypass"
    )
    assert ask(client, {"X-LG-Use-Cache": "auto"}, temperature=0.8).headers["x-lg-cache"] == (
        "miss"
    )
    assert chat_calls(state) == 5
    set_policy(cache_gateway, tenant, default_mode="never")
    assert ask(client).headers["x-lg-cache"] == "bypass"  # even a deterministic request
    assert ask(client, {"x-bt-use-cache": "always"}).headers["x-lg-cache"] == "miss"
    # The policy is an event of its own aggregate (who set it is recorded) and reads back.
    aggregate = cache_gateway.services.app.repository.get(
        ProjectCachePolicy.create_id(str(tenant.project_id))
    )
    assert aggregate.version == 3 and aggregate.set_by == "admin"
    with cache_gateway.client() as http:
        feed = http.get("/v1/data/events?limit=500", headers=tenant.headers())
    assert feed.status_code == 200, feed.text
    changes = [
        orjson.loads(line)
        for line in feed.text.splitlines()
        if '"ProjectCachePolicy.PolicySet"' in line
    ]
    assert [change["data"]["default_mode"] for change in changes] == ["always", "never"]
    with cache_gateway.client() as http:
        shown = http.get(f"/v1/admin/projects/{tenant.project_id}/cache-policy", headers=ADMIN)
    assert shown.status_code == 200
    assert shown.json()["default_mode"] == "never"
    assert shown.json()["store"]["entries"] >= 2


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"default_mode": "sometimes"}, "default_mode"),
        ({"share_across_keys": "yes"}, "share_across_keys"),
        ({"semantic_threshold": "0.2"}, None),
        ({"semantic_threshold": True}, "semantic_threshold"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_cache_policy_input_is_a_400_naming_it(
    sqlite_gateway: Gateway, fields: dict[str, Any], param: str | None
) -> None:
    tenant = sqlite_gateway.tenant()
    with sqlite_gateway.client() as http:
        response = http.post(
            f"/v1/admin/projects/{tenant.project_id}/cache-policy", headers=ADMIN, json=fields
        )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and error["param"] == param
    assert response.headers["x-request-id"].startswith("lg_req_")


def test_the_cache_policy_needs_the_admin_token_and_a_known_project(
    sqlite_gateway: Gateway,
) -> None:
    tenant = sqlite_gateway.tenant()
    path = f"/v1/admin/projects/{tenant.project_id}/cache-policy"
    with sqlite_gateway.client() as http:
        assert http.post(path, headers=tenant.headers(), json={}).status_code == 401
        unknown = http.post(
            "/v1/admin/projects/00000000-0000-4000-8000-000000000000/cache-policy",
            headers=ADMIN,
            json={"default_mode": "always"},
        )
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "project_not_found"
        malformed = http.get("/v1/admin/projects/not-a-uuid/cache-policy", headers=ADMIN)
        assert malformed.status_code == 400
        # Sharing derives the project's secret from the server's: refused without one.
        sharing = http.post(path, headers=ADMIN, json={"share_across_keys": True})
        assert sharing.status_code == 503
        assert sharing.json()["error"]["code"] == "secret_key_missing"


def test_the_cli_sets_the_policy_and_the_running_gateway_applies_it(
    cache_gateway: Gateway, simulator: tuple[BackgroundServer, SimulatorState], capsys: Any
) -> None:
    tenant = cache_gateway.tenant()
    client = cache_gateway.openai(tenant)
    args = build_parser().parse_args(
        ["cache", "policy", "--project", str(tenant.project_id), "--default-mode", "always"]
    )
    assert run_cache_command(Settings.from_env(dict(cache_gateway.settings.raw)), args) == 0
    printed = capsys.readouterr().out
    assert '"default_mode": "always"' in printed
    position = int(printed.split('"position": ')[1].split(",")[0].split("}")[0])
    # Another process wrote the event: the gateway applies it once its runner has seen it.
    cache_gateway.services.runner.wait_for(position, 10.0)
    assert ask(client, temperature=0.9).headers["x-lg-cache"] == "miss"
    assert ask(client, temperature=0.9).headers["x-lg-cache"] == "hit"
    bad = build_parser().parse_args(
        ["cache", "policy", "--project", str(tenant.project_id), "--semantic-threshold", "2"]
    )
    assert run_cache_command(Settings.from_env(dict(cache_gateway.settings.raw)), bad) == 1
    assert '"code": "invalid_request"' in capsys.readouterr().out
    show = build_parser().parse_args(["cache", "show", "--project", str(tenant.project_id)])
    assert run_cache_command(Settings.from_env(dict(cache_gateway.settings.raw)), show) == 0
    shown = orjson.loads(capsys.readouterr().out)
    assert shown["default_mode"] == "always" and shown["store"]["entries"] == 1
    purge = build_parser().parse_args(["cache", "purge"])
    assert run_cache_command(Settings.from_env(dict(cache_gateway.settings.raw)), purge) == 0
    assert orjson.loads(capsys.readouterr().out) == {"purged": 0}  # nothing has expired yet


# --- sharing across the project's keys -----------------------------------------------------


def test_keys_share_entries_only_when_their_project_opts_in_and_never_across_projects(
    cache_gateway: Gateway, simulator: tuple[BackgroundServer, SimulatorState]
) -> None:
    state = simulator[1]
    tenant = cache_gateway.tenant()
    other_key = second_key(cache_gateway, tenant)
    assert ask(cache_gateway.openai(tenant)).headers["x-lg-cache"] == "miss"
    assert ask(cache_gateway.openai(other_key)).headers["x-lg-cache"] == "miss"  # not shared
    assert chat_calls(state) == 2
    set_policy(cache_gateway, tenant, share_across_keys=True)
    first = ask(cache_gateway.openai(tenant))
    assert first.headers["x-lg-cache"] == "miss"  # entries sealed per key are not shared ones
    shared = ask(cache_gateway.openai(other_key))
    assert shared.headers["x-lg-cache"] == "hit"
    assert shared.parse().choices[0].message.content == REPLY
    assert chat_calls(state) == 3
    record = audit_record(cache_gateway, tenant, shared.headers["x-request-id"])
    assert record["cache"] == "hit"
    assert record["cache_origin_request_id"] == first.headers["x-request-id"]
    assert record["key_id"] == str(other_key.key_id)
    # Another project, sharing too, never reads this project's entries.
    stranger = cache_gateway.tenant()
    set_policy(cache_gateway, stranger, share_across_keys=True)
    assert ask(cache_gateway.openai(stranger)).headers["x-lg-cache"] == "miss"
    # Sharing off again: each key is on its own.
    set_policy(cache_gateway, tenant, share_across_keys=False)
    assert ask(cache_gateway.openai(other_key)).headers["x-lg-cache"] == "hit"  # its own entry
    third_key = second_key(cache_gateway, tenant)
    assert ask(cache_gateway.openai(third_key)).headers["x-lg-cache"] == "miss"


# --- the semantic cache ---------------------------------------------------------------------


def test_a_paraphrase_above_the_threshold_is_served_with_its_similarity_and_audited(
    cache_gateway: Gateway, simulator: tuple[BackgroundServer, SimulatorState]
) -> None:
    state = simulator[1]
    tenant = cache_gateway.tenant()
    client = cache_gateway.openai(tenant)
    semantic = {"X-LG-Cache-Semantic": "0.8"}
    origin = ask(client, semantic)
    assert origin.headers["x-lg-cache"] == "miss"
    assert "x-lg-cache-similarity" not in origin.headers
    hit = ask(client, semantic, messages=PARAPHRASE)
    assert hit.headers["x-lg-cache"] == "hit"
    similarity = float(hit.headers["x-lg-cache-similarity"])
    assert 0.8 <= similarity < 1.0
    assert hit.parse().choices[0].message.content == REPLY
    assert chat_calls(state) == 1  # the paraphrase never reached the model
    record = audit_record(cache_gateway, tenant, hit.headers["x-request-id"])
    assert record["cache"] == "semantic_hit"
    assert record["cache_origin_request_id"] == origin.headers["x-request-id"]
    assert Decimal(record["cost"]) == 0 and Decimal(record["provider_cost"]) == 0
    # The prompt was embedded through the router, as an embeddings request of the caller's:
    # audited and charged like any other.
    embedding_id = hit.headers["x-lg-cache-embedding-request-id"]
    embedded = audit_record(cache_gateway, tenant, embedding_id)
    assert embedded["status"] == "completed" and embedded["endpoint"] == "embeddings"
    assert embedded["model"] == "text-embedding-3-small"
    assert Decimal(embedded["cost"]) > 0
    assert embedding_calls(state) == 2


def test_a_prompt_below_the_threshold_misses_and_is_answered_by_the_model(
    cache_gateway: Gateway, simulator: tuple[BackgroundServer, SimulatorState]
) -> None:
    state = simulator[1]
    client = cache_gateway.openai(cache_gateway.tenant())
    assert ask(client, {"X-LG-Cache-Semantic": "0.8"}).headers["x-lg-cache"] == "miss"
    unrelated = ask(client, {"X-LG-Cache-Semantic": "0.8"}, messages=UNRELATED)
    assert unrelated.headers["x-lg-cache"] == "miss"
    assert "x-lg-cache-similarity" not in unrelated.headers
    # The paraphrase is close, but not as close as a strict caller asks.
    strict = ask(client, {"X-LG-Cache-Semantic": "0.97"}, messages=PARAPHRASE)
    assert strict.headers["x-lg-cache"] == "miss"
    # Without the header (and no project default) a paraphrase is only an exact miss.
    assert ask(client, messages=[{"role": "user", "content": "Tell me the capital city of Sweden!"}]).headers["x-lg-cache"] == "miss"  # fmt: skip
    assert chat_calls(state) == 4


def test_the_semantic_cache_never_serves_across_projects_or_keys(
    cache_gateway: Gateway, simulator: tuple[BackgroundServer, SimulatorState]
) -> None:
    state = simulator[1]
    semantic = {"X-LG-Cache-Semantic": "0.8"}
    tenant = cache_gateway.tenant()
    assert ask(cache_gateway.openai(tenant), semantic).headers["x-lg-cache"] == "miss"
    stranger = cache_gateway.tenant()
    assert ask(cache_gateway.openai(stranger), semantic).headers["x-lg-cache"] == "miss"
    assert (
        ask(cache_gateway.openai(stranger), semantic, messages=PARAPHRASE).headers["x-lg-cache"]
        == "hit"
    )  # its own entry, not the first project's
    other_key = second_key(cache_gateway, tenant)
    assert (
        ask(cache_gateway.openai(other_key), semantic, messages=PARAPHRASE).headers["x-lg-cache"]
        == "miss"
    )  # no sharing: another key's entries are not even compared
    assert chat_calls(state) == 3
    # With sharing on, the project's keys compare against each other's entries.
    set_policy(cache_gateway, tenant, share_across_keys=True)
    assert ask(cache_gateway.openai(tenant), semantic).headers["x-lg-cache"] == "miss"
    assert (
        ask(cache_gateway.openai(other_key), semantic, messages=PARAPHRASE).headers["x-lg-cache"]
        == "hit"
    )


def test_a_semantic_entry_past_its_ttl_is_never_served(
    cache_gateway: Gateway, simulator: tuple[BackgroundServer, SimulatorState]
) -> None:
    client = cache_gateway.openai(cache_gateway.tenant())
    semantic = {"X-LG-Cache-Semantic": "0.8"}
    assert ask(client, {**semantic, "X-LG-Cache-TTL": "60"}).headers["x-lg-cache"] == "miss"
    assert ask(client, semantic, messages=PARAPHRASE).headers["x-lg-cache"] == "hit"
    cache = response_cache(cache_gateway.services)
    real_clock = cache.clock
    cache.clock = TravelledClock(timedelta(seconds=61))
    try:
        later = ask(client, semantic, messages=PARAPHRASE)
        assert later.headers["x-lg-cache"] == "miss"
        assert "x-lg-cache-similarity" not in later.headers
    finally:
        cache.clock = real_clock
    assert chat_calls(simulator[1]) == 2


def test_a_project_semantic_default_applies_and_a_request_may_turn_it_off(
    cache_gateway: Gateway, simulator: tuple[BackgroundServer, SimulatorState]
) -> None:
    tenant = cache_gateway.tenant()
    client = cache_gateway.openai(tenant)
    policy = set_policy(cache_gateway, tenant, semantic_threshold="0.8")
    assert policy["semantic_threshold"] == "0.8"
    assert ask(client).headers["x-lg-cache"] == "miss"
    assert ask(client, messages=PARAPHRASE).headers["x-lg-cache"] == "hit"
    assert chat_calls(simulator[1]) == 1
    # A semantic hit stores nothing under the paraphrase's own exact key: with the semantic
    # cache turned off for the request, the paraphrase is an exact miss.
    off = ask(client, {"X-LG-Cache-Semantic": "off"}, messages=PARAPHRASE)
    assert off.headers["x-lg-cache"] == "miss"
    assert "x-lg-cache-similarity" not in off.headers
    assert "x-lg-cache-embedding-request-id" not in off.headers  # nothing was embedded
    assert chat_calls(simulator[1]) == 2


def test_a_streamed_paraphrase_replays_the_cached_stream_as_sse(
    cache_gateway: Gateway, simulator: tuple[BackgroundServer, SimulatorState]
) -> None:
    state = simulator[1]
    client = cache_gateway.openai(cache_gateway.tenant())

    semantic = {"X-LG-Cache-Semantic": "0.8"}
    text, usage, headers = cached_stream(client, semantic, messages=QUESTION)
    assert headers["x-lg-cache"] == "miss" and text == REPLY
    replayed, replayed_usage, headers = cached_stream(client, semantic, messages=PARAPHRASE)
    assert headers["x-lg-cache"] == "hit"
    assert float(headers["x-lg-cache-similarity"]) >= 0.8
    assert replayed == REPLY
    assert replayed_usage is not None and usage is not None
    assert replayed_usage.completion_tokens == usage.completion_tokens
    assert chat_calls(state) == 1


def test_no_vector_prompt_or_completion_is_stored_in_the_clear_after_semantic_traffic(
    cache_gateway: Gateway, simulator: tuple[BackgroundServer, SimulatorState], tmp_path: Path
) -> None:
    client = cache_gateway.openai(cache_gateway.tenant())
    semantic = {"X-LG-Cache-Semantic": "0.8"}
    secret_prompt = [{"role": "user", "content": "What is the Quokka-parliament passphrase?"}]
    ask(client, semantic, messages=secret_prompt)
    ask(client, semantic, messages=[{"role": "user", "content": "Tell me the Quokka-parliament passphrase"}])  # fmt: skip
    ask(client, semantic)
    cache_gateway.settle()
    rows = cache_rows(cache_gateway, tmp_path)
    assert len(rows) >= 2
    assert all(row["project_id"] for row in rows)
    with_vectors = [row for row in rows if row["sealed_semantic"]]
    assert len(with_vectors) >= 2 and all(row["bucket_id"] for row in with_vectors)
    for row in with_vectors:
        raw = base64.b64decode(row["sealed_semantic"])
        assert b"vector" not in raw and b"entry_key" not in raw  # sealed, not JSON
    found = scan_for_plaintext(cache_gateway, tmp_path, ["zebra-quartz", "Quokka-parliament"])
    assert found["found"] == [], found["found"]


def cache_rows(gateway: Gateway, tmp_path: Path) -> list[dict[str, Any]]:
    query = "SELECT project_id, bucket_id, sealed_semantic FROM lg_response_cache"
    url = gateway.settings.raw.get("LEDGERGATE_DATABASE_URL")
    if url:
        schema = url.split("schema=")[1].split("&")[0]
        with psycopg.connect(url.split("?")[0]) as connection:
            connection.execute(f'SET search_path TO "{schema}"')
            cursor = connection.execute(query)
            names = [column.name for column in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    views = next(Path(tmp_path).rglob("views.sqlite"))
    with sqlite3.connect(views) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(row) for row in connection.execute(query).fetchall()]


def test_a_second_gateway_process_on_the_same_postgresql_serves_the_first_ones_entries(
    postgres_env: dict[str, str], simulator: tuple[BackgroundServer, SimulatorState]
) -> None:
    """Entries and semantic buckets live in the shared store: a gateway that never saw the
    origin request builds the bucket's index from it (and sees evictions made elsewhere)."""
    state = simulator[1]
    state.reply = REPLY
    env = {
        **postgres_env,
        "LEDGERGATE_OPENAI_BASE_URL": simulator[0].base_url + "/v1",
        "LEDGERGATE_OPENAI_API_KEY": "sk-test",
        "LEDGERGATE_SECRET_KEY": SERVER_SECRET,
        "LEDGERGATE_RESPONSE_CACHE_PROJECT_ENTRIES_MAX": "3",
    }
    first, second = start_gateway(env), start_gateway(env)
    try:
        first.set_price("gpt-4o-mini", "0.15", "0.60")
        first.set_price("text-embedding-3-small", "0.02", "0")
        tenant = first.tenant()
        semantic = {"X-LG-Cache-Semantic": "0.8"}
        assert ask(first.openai(tenant), semantic).headers["x-lg-cache"] == "miss"
        served = ask(second.openai(tenant), semantic, messages=PARAPHRASE)
        assert served.headers["x-lg-cache"] == "hit"
        assert float(served.headers["x-lg-cache-similarity"]) >= 0.8
        assert chat_calls(state) == 1
        # Three more entries of the project on the first gateway: its bound (3 entries, the
        # embeddings' own entries included) evicts the origin; the second gateway's index
        # notices and no longer serves it.
        for text in ("Pancakes?", "Everest?", "Tea?"):
            ask(first.openai(tenant), messages=[{"role": "user", "content": text}])
        again = ask(second.openai(tenant), semantic, messages=PARAPHRASE)
        assert again.headers["x-lg-cache"] == "miss"
    finally:
        second.server.stop()
        first.server.stop()
