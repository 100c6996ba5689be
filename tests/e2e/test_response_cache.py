"""The encrypted response cache end to end: the real openai SDK over real HTTP, through the
gateway, to the simulated OpenAI upstream, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import openai
import pytest

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
from tests.support.harness import Gateway

MESSAGES = [{"role": "user", "content": "Name the capital of Sweden"}]
REPLY = "Stockholm-zebra-quartz is the capital"  # distinctive: the plaintext scan looks for it


@pytest.fixture
def upstream(simulator: tuple[BackgroundServer, SimulatorState]) -> SimulatorState:
    simulator[1].reply = REPLY
    return simulator[1]


ask = partial(cached_chat, messages=MESSAGES)


def test_auto_mode_caches_a_deterministic_request_and_the_hit_is_audited_at_zero_cost(
    gateway: Gateway, upstream: SimulatorState
) -> None:
    tenant = gateway.tenant()
    client = gateway.openai(tenant)
    first = ask(client)
    assert first.headers["x-lg-cache"] == "miss"
    second = ask(client)
    assert second.headers["x-lg-cache"] == "hit"
    assert len(upstream.requests) == 1
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert Decimal(second.headers["x-lg-actual-cost"]) == 0
    record = audit_record(gateway, tenant, second.headers["x-request-id"])
    assert record["status"] == "completed"
    assert record["cache"] == "hit"
    assert record["cache_origin_request_id"] == first.headers["x-request-id"]
    assert Decimal(record["provider_cost"]) == 0 and Decimal(record["cost"]) == 0
    assert Decimal(record["fee_amount"]) == 0
    assert record["usage_source"] == "cache"
    origin = audit_record(gateway, tenant, first.headers["x-request-id"])
    assert origin["cache"] == "miss" and Decimal(origin["cost"]) > 0


def test_auto_mode_never_caches_a_sampled_request_and_always_caches_it(
    gateway: Gateway, upstream: SimulatorState
) -> None:
    client = gateway.openai(gateway.tenant())
    # Not consulted: the provider answers, a miss (a bypass is what `never` asks for).
    assert ask(client, temperature=0.7).headers["x-lg-cache"] == "miss"
    assert ask(client, temperature=0.7).headers["x-lg-cache"] == "miss"
    assert len(upstream.requests) == 2
    seeded = ask(client, temperature=0.7, seed=7)
    assert seeded.headers["x-lg-cache"] == "miss"
    assert ask(client, temperature=0.7, seed=7).headers["x-lg-cache"] == "hit"
    assert len(upstream.requests) == 3
    always = {"X-LG-Use-Cache": "always"}
    assert ask(client, always, temperature=0.9).headers["x-lg-cache"] == "miss"
    assert ask(client, {"x-bt-use-cache": "always"}, temperature=0.9).headers["x-lg-cache"] == "hit"
    assert len(upstream.requests) == 4


def test_never_mode_neither_reads_nor_writes(gateway: Gateway, upstream: SimulatorState) -> None:
    client = gateway.openai(gateway.tenant())
    never = {"X-LG-Use-Cache": "never"}
    assert ask(client, never).headers["x-lg-cache"] == "bypass"
    assert ask(client).headers["x-lg-cache"] == "miss"  # the never request stored nothing
    assert ask(client, never).headers["x-lg-cache"] == "bypass"  # nor reads the entry now
    assert len(upstream.requests) == 3


def test_no_store_skips_the_write_and_no_cache_skips_the_read(
    gateway: Gateway, upstream: SimulatorState
) -> None:
    client = gateway.openai(gateway.tenant())
    assert ask(client, {"Cache-Control": "no-store"}).headers["x-lg-cache"] == "miss"
    assert ask(client, {"Cache-Control": "no-cache"}).headers["x-lg-cache"] == "bypass"
    assert len(upstream.requests) == 2
    assert ask(client).headers["x-lg-cache"] == "hit"  # the no-cache request wrote its answer
    assert len(upstream.requests) == 2


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-LG-Use-Cache", "sometimes"),
        ("X-LG-Cache-TTL", "0"),
        ("X-LG-Cache-TTL", "604801"),
        ("X-LG-Cache-TTL", "ten"),
    ],
)
def test_a_bad_cache_header_is_a_400_naming_it_and_is_audited(
    sqlite_gateway: Gateway, upstream: SimulatorState, header: str, value: str
) -> None:
    tenant = sqlite_gateway.tenant()
    client = sqlite_gateway.openai(tenant)
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, {header: value})
    error = caught.value.body
    assert isinstance(error, dict) and error["param"] == header.lower()
    record = audit_record(sqlite_gateway, tenant, caught.value.response.headers["x-request-id"])
    assert record["status"] == "rejected" and record["http_status"] == 400
    assert not upstream.requests


def test_an_entry_expires_after_its_ttl(gateway: Gateway, upstream: SimulatorState) -> None:
    client = gateway.openai(gateway.tenant())
    cache = response_cache(gateway.services)
    assert ask(client, {"X-LG-Cache-TTL": "60"}).headers["x-lg-cache"] == "miss"
    assert ask(client).headers["x-lg-cache"] == "hit"
    real_clock = cache.clock
    cache.clock = TravelledClock(timedelta(seconds=61))
    try:
        assert ask(client).headers["x-lg-cache"] == "miss"
        assert len(upstream.requests) == 2
        # The default TTL is the maximum, 7 days: just before it the entry is still served.
        cache.clock = TravelledClock(timedelta(days=7, seconds=-10))
        assert ask(client).headers["x-lg-cache"] == "hit"
        cache.clock = TravelledClock(timedelta(days=7, seconds=120))
        assert ask(client).headers["x-lg-cache"] == "miss"
    finally:
        cache.clock = real_clock


def test_a_stream_hit_replays_as_sse_with_usage_and_done(
    gateway: Gateway, upstream: SimulatorState
) -> None:
    tenant = gateway.tenant()
    client = gateway.openai(tenant)

    text, usage, origin = cached_stream(client, messages=MESSAGES)
    assert origin["x-lg-cache"] == "miss" and text == REPLY and usage is not None
    replayed, replayed_usage, hit = cached_stream(client, messages=MESSAGES)
    origin_id, hit_id = origin["x-request-id"], hit["x-request-id"]
    assert hit["x-lg-cache"] == "hit"
    assert replayed == REPLY
    assert replayed_usage is not None
    assert replayed_usage.completion_tokens == usage.completion_tokens
    assert len(upstream.requests) == 1
    record = audit_record(gateway, tenant, hit_id)
    assert record["cache"] == "hit" and record["cache_origin_request_id"] == origin_id
    assert Decimal(record["cost"]) == 0
    # The raw wire form: data frames, then the usage frame, then [DONE].
    with gateway.client() as http:
        response = http.post(
            "/v1/chat/completions",
            headers=tenant.headers(),
            json={
                "model": "gpt-4o-mini",
                "messages": MESSAGES,
                "temperature": 0,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        )
    frames = [line for line in response.text.split("\n\n") if line]
    assert response.headers["x-lg-cache"] == "hit"
    assert response.headers["content-type"].startswith("text/event-stream")
    assert frames[-1] == "data: [DONE]"
    assert '"usage":{' in frames[-2] and '"choices":[]' in frames[-2]
    assert len(frames) >= 4


def test_a_second_key_of_the_same_project_misses_the_first_keys_entries(
    gateway: Gateway, upstream: SimulatorState
) -> None:
    from uuid import UUID

    from domain import commands as c
    from tests.support.harness import Tenant

    tenant = gateway.tenant()
    key = gateway.execute(c.CreateApiKey(project_id=tenant.project_id))
    second = Tenant(tenant.project_id, key["api_key"], UUID(key["key_id"]), tenant.currency)
    assert ask(gateway.openai(tenant)).headers["x-lg-cache"] == "miss"
    assert ask(gateway.openai(tenant)).headers["x-lg-cache"] == "hit"
    assert ask(gateway.openai(second)).headers["x-lg-cache"] == "miss"
    assert len(upstream.requests) == 2
    other_project = gateway.tenant()
    assert ask(gateway.openai(other_project)).headers["x-lg-cache"] == "miss"


def test_eight_identical_requests_at_once_make_one_upstream_call(
    gateway: Gateway, simulator: tuple[BackgroundServer, SimulatorState]
) -> None:
    state = simulator[1]
    state.reply = REPLY
    state.response_delay_s = 0.3  # all eight arrive while the first is upstream
    client = gateway.openai(gateway.tenant())
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: ask(client), range(8)))
    outcomes = sorted(result.headers["x-lg-cache"] for result in results)
    assert outcomes == ["hit"] * 7 + ["miss"]
    assert len(state.requests) == 1
    assert {result.parse().choices[0].message.content for result in results} == {REPLY}


def test_no_table_or_file_holds_a_plaintext_prompt_or_completion_after_cached_traffic(
    gateway: Gateway, upstream: SimulatorState, tmp_path: Path
) -> None:
    client = gateway.openai(gateway.tenant())
    prompt = [{"role": "user", "content": "Quokka-parliament-secret question"}]
    for _ in range(2):
        ask(client, messages=prompt)
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, temperature=0, stream=True
    )
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    gateway.settle()
    entries = scan_for_plaintext(gateway, tmp_path, ["zebra-quartz", "Quokka-parliament"])
    assert entries["lg_response_cache rows"] == 2  # the scan looked at real cached entries
    assert entries["found"] == [], entries["found"]


def test_a_pii_answer_is_cached_with_placeholders_and_rehydrated_for_a_second_caller(
    gateway: Gateway, simulator: tuple[BackgroundServer, SimulatorState], tmp_path: Path
) -> None:
    state = simulator[1]
    state.reply = "Confirmed, <PERSON_1>: the receipt goes to <EMAIL_ADDRESS_1>."
    tenant = gateway.tenant()
    policy = {"pii_policy": {"action": "pseudonymize", "rehydrate_response": True}}

    def caller(name: str, email: str, user: str) -> Any:
        return ask(
            gateway.openai(tenant, user=user, timeout=180.0),
            messages=[{"role": "user", "content": f"I'm {name}, mail {email}. Confirm, please."}],
            extra_body=policy,
        )

    first = caller("Anna Svensson", "anna.svensson@example.com", "alice")
    assert first.headers["x-lg-cache"] == "miss"
    assert first.parse().choices[0].message.content == (
        "Confirmed, Anna Svensson: the receipt goes to anna.svensson@example.com."
    )
    second = caller("Lars Berg", "lars.berg@example.com", "bob")
    assert second.headers["x-lg-cache"] == "hit"  # the screened prompts are identical
    assert second.parse().choices[0].message.content == (
        "Confirmed, Lars Berg: the receipt goes to lars.berg@example.com."
    )
    assert len(state.requests) == 1
    gateway.settle()
    scan = scan_for_plaintext(
        gateway, tmp_path, ["Anna Svensson", "Lars Berg", "lars.berg@", "anna.sv"]
    )
    assert scan["lg_response_cache rows"] == 1
    assert scan["found"] == []


def test_embeddings_are_cached_with_always_and_served_at_zero_cost(
    gateway: Gateway, upstream: SimulatorState
) -> None:
    gateway.set_price("text-embedding-3-small", "0.02", "0")
    tenant = gateway.tenant()
    client = gateway.openai(tenant)

    def embed(headers: dict[str, str] | None = None) -> Any:
        return client.embeddings.with_raw_response.create(
            model="text-embedding-3-small", input=["alpha", "beta"], extra_headers=headers
        )

    assert embed().headers["x-lg-cache"] == "miss"  # auto: embeddings carry no temperature
    assert embed().headers["x-lg-cache"] == "miss"  # … so nothing was stored
    first = embed({"X-LG-Use-Cache": "always"})
    second = embed({"X-LG-Use-Cache": "always"})
    assert (first.headers["x-lg-cache"], second.headers["x-lg-cache"]) == ("miss", "hit")
    vectors = [item.embedding for item in second.parse().data]
    assert vectors == [item.embedding for item in first.parse().data]
    assert Decimal(second.headers["x-lg-actual-cost"]) == 0
    record = audit_record(gateway, tenant, second.headers["x-request-id"])
    assert record["cache"] == "hit"
    assert record["cache_origin_request_id"] == first.headers["x-request-id"]
    assert record["upstream_ms"] == 0 and Decimal(record["provider_cost"]) == 0
