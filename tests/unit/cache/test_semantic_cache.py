"""The semantic cache and the finished exact cache without HTTP: what is embedded and what
must match exactly, sealed vectors, the exact scan with expiry, the store's per-project
bound, and plans under a project's policy (default mode, sharing, key mode)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import numpy as np
import pytest

from domain.cache_policy import CachePolicy
from domain.clock import FixedClock
from domain.tiers import effective_tier
from gateway import response_cache as rc
from gateway import semantic_cache as sc
from gateway.errors import GatewayError
from gateway.simulator import hashed_ngram_embedding
from projections.db import ReadStore

PROJECT = uuid4()
SERVER_SECRET = "unit-test-server-secret-0123456789"


def body(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}],
        "temperature": 0,
        **extra,
    }


def inputs(
    api_key: str = "lg_live_a",
    headers: dict[str, str] | None = None,
    project_id: UUID = PROJECT,
    **body_changes: Any,
) -> rc.PlanInputs:
    request = body(body_changes.pop("text", "What is the capital of Sweden?"), **body_changes)
    plan = rc.plan_request(
        headers or {},
        request,
        endpoint="chat.completions",
        api_key=api_key,
        project_id=project_id,
        scope=effective_tier("unrestricted").cache_scope(),
        models=("gpt-4o-mini",),
        pii_policy=None,
        stream=False,
        screened_body=request,
    )
    assert plan.inputs is not None
    return plan.inputs


def resolved(policy: CachePolicy, **kwargs: Any) -> rc.CachePlan:
    return rc.build_plan(
        inputs(**kwargs),
        policy,
        server_secret=SERVER_SECRET,
        effective=effective_tier("unrestricted"),
        embedding_model_for=lambda _effective, preferred: preferred or "text-embedding-3-small",
    )


def test_the_semantic_text_is_every_message_and_a_long_conversation_is_not_embedded() -> None:
    text = sc.semantic_text(body("hello there"))
    assert text == "system: Be brief.\nuser: hello there"
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]}
    assert sc.semantic_text(parts) == "user: a"
    assert sc.semantic_text({"messages": [{"role": "user", "content": "x" * 20_000}]}) is None
    assert sc.semantic_text({"messages": []}) is None


def test_only_the_text_may_differ_within_a_bucket() -> None:
    fields = {"project": "p", "scope": "tier=unrestricted", "models": ["m"]}

    def bucket(request: dict[str, Any], model: str = "e", **changed: Any) -> bytes:
        return sc.bucket_material(
            exact_material_fields={**fields, **changed},
            screened_body=request,
            embedding_model=model,
        )

    same = bucket(body("first wording"))
    assert bucket(body("quite another wording")) == same
    assert bucket(body("first wording", max_tokens=5)) != same
    assert bucket(body("first wording", stream=True)) == same  # the stream flag is a field
    assert bucket(body("first wording"), model="other-embedding") != same
    # Never across tiers or projects: they are fields of the bucket.
    assert bucket(body("first wording"), scope="tier=eu_strict") != same
    assert bucket(body("first wording"), project="q") != same
    shorter = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}
    assert bucket(shorter) != same


def test_a_vector_sealed_for_one_bucket_opens_only_there() -> None:
    bucket = sc.derive_bucket(b"key-a", b"material")
    vector = sc.normalized([3.0, 4.0])
    assert vector is not None
    sealed = sc.seal_vector(bucket, "lookup-1", vector, b"k" * 32)
    opened = sc.unseal_vector(bucket, "lookup-1", sealed)
    assert opened is not None and np.allclose(opened[0], [0.6, 0.8]) and opened[1] == b"k" * 32
    assert sc.unseal_vector(sc.derive_bucket(b"key-b", b"material"), "lookup-1", sealed) is None
    assert sc.unseal_vector(bucket, "lookup-2", sealed) is None  # moved under another id
    assert sc.derive_bucket(b"key-a", b"material").bucket_id == bucket.bucket_id
    assert sc.normalized([0.0, 0.0]) is None and sc.normalized([float("nan")]) is None


def test_the_exact_scan_finds_the_nearest_live_vector_and_skips_expired_ones() -> None:
    index = sc.BucketIndex(256)
    texts = ["What is the capital of Sweden?", "How tall is Mount Everest?", "Pancake recipe"]
    rows = []
    for number, text in enumerate(texts):
        vector = sc.normalized(hashed_ngram_embedding(text))
        assert vector is not None
        rows.append((f"id{number}", vector, b"k", 1000.0 + number))
    index.extend(rows)
    query = sc.normalized(hashed_ngram_embedding("Tell me the capital of Sweden"))
    assert query is not None
    best = index.nearest(query, now_s=0.0)
    assert best is not None and best.lookup_id == "id0" and best.similarity > 0.7
    assert index.nearest(query, now_s=1000.5) is not None  # id0 expired: the next best
    assert index.nearest(query, now_s=1000.5).lookup_id != "id0"  # type: ignore[union-attr]
    assert index.nearest(query, now_s=5000.0) is None  # everything expired
    index.extend([("id0", query, b"k2", 9999.0)])  # a rewritten entry replaces its row
    assert len(index) == 3 and index.nearest(query, 0.0).similarity == pytest.approx(1.0)  # type: ignore[union-attr]
    index.remove({"id0"})
    assert len(index) == 2 and "id0" not in index.lookup_ids


def test_paraphrases_are_close_and_unrelated_texts_are_not_under_the_simulated_embedding() -> None:
    def similarity(a: str, b: str) -> float:
        return float(np.dot(hashed_ngram_embedding(a), hashed_ngram_embedding(b)))

    question = "What is the capital city of Sweden?"
    assert similarity(question, "Tell me the capital city of Sweden.") > 0.8
    assert similarity(question, "How tall is Mount Everest?") < 0.5
    assert similarity(question, "Give me a recipe for pancakes") < 0.3
    assert hashed_ngram_embedding(question) == hashed_ngram_embedding(question)
    assert len(hashed_ngram_embedding(question, 8)) == 8


@pytest.fixture
def store(tmp_path: Path):
    read_store = ReadStore(None, str(tmp_path))
    read_store.migrate()
    yield read_store
    read_store.close()


def test_one_project_over_its_bound_evicts_its_own_oldest_entries_not_another_projects(
    store: ReadStore,
) -> None:
    clock = FixedClock(datetime(2026, 12, 1, 12, tzinfo=UTC))
    cache = rc.ResponseCacheStore(
        store, clock, entries_max=100, bytes_max=10**6, project_entries_max=2
    )
    cache.put_sync("b0", "x" * 10, ttl_s=60, project_id="B")
    for number in range(4):
        clock.advance(seconds=1)
        cache.put_sync(f"a{number}", "x" * 10, ttl_s=60, project_id="A")
    present = [cache.get_sync(f"a{number}") is not None for number in range(4)]
    assert present == [False, False, True, True]
    assert cache.get_sync("b0") is not None  # the older entry of the other project stays
    assert cache.project_usage_sync("A") == {"entries": 2, "bytes": 20}
    cache.project_bytes_max = 15  # one entry of 10 characters
    cache.put_sync("a4", "y" * 10, ttl_s=60, project_id="A")
    assert cache.project_usage_sync("A")["entries"] == 1 and cache.get_sync("a4") is not None


def test_the_bucket_index_follows_the_store_new_rows_evictions_and_expiry(
    store: ReadStore,
) -> None:
    clock = FixedClock(datetime(2026, 12, 1, 12, tzinfo=UTC))
    cache = rc.ResponseCacheStore(store, clock, project_entries_max=4)
    bucket = sc.derive_bucket(b"secret", b"bucket")
    other_bucket = sc.derive_bucket(b"secret", b"another bucket")

    def put(lookup_id: str, text: str, ttl_s: int = 60, target: sc.Bucket = bucket) -> None:
        vector = sc.normalized(hashed_ngram_embedding(text))
        assert vector is not None
        sealed = sc.seal_vector(target, lookup_id, vector, b"k" * 32)
        cache.put_sync(
            lookup_id,
            "entry",
            ttl_s,
            project_id="P",
            bucket_id=target.bucket_id,
            sealed_semantic=sealed,
        )
        clock.advance(seconds=1)

    put("one", "capital of Sweden")
    put("two", "height of Everest", ttl_s=5)
    put("elsewhere", "capital of Sweden", target=other_bucket)
    index = cache.refresh_bucket_sync(bucket)
    assert index is not None and sorted(index.lookup_ids) == ["one", "two"]
    put("three", "recipe for pancakes")  # another process could have written it
    index = cache.refresh_bucket_sync(bucket)
    assert index is not None and sorted(index.lookup_ids) == ["one", "three", "two"]
    put("four", "price of tea")  # the project's bound (4) evicts its oldest: "one"
    index = cache.refresh_bucket_sync(bucket)
    assert index is not None and "one" not in index.lookup_ids
    clock.advance(seconds=10)  # "two" expired
    index = cache.refresh_bucket_sync(bucket)
    assert index is not None and index.live_count(clock.now().timestamp()) == 2


def test_the_project_default_mode_applies_only_when_the_request_names_none() -> None:
    always = CachePolicy(default_mode="always")
    sampled = {"temperature": 0.7}
    assert resolved(always, **sampled).options.read  # cached though sampled
    assert resolved(CachePolicy(), **sampled).outcome == rc.MISS  # auto: not consulted
    named = resolved(always, headers={"x-lg-use-cache": "auto"}, **sampled)
    assert not named.consulted and named.outcome == rc.MISS
    never = resolved(CachePolicy(default_mode="never"))
    assert not never.consulted and never.outcome == rc.BYPASS
    no_store = resolved(always, headers={"cache-control": "no-store"}, **sampled)
    assert no_store.options.read and not no_store.options.write


def test_sharing_derives_one_key_for_the_project_and_keeps_test_and_live_apart() -> None:
    shared = CachePolicy(share_across_keys=True)
    first, second = resolved(shared, api_key="lg_live_a"), resolved(shared, api_key="lg_live_b")
    assert first.shared and first.lookup_id == second.lookup_id
    assert first.entry_key == second.entry_key
    assert resolved(shared, api_key="lg_test_a").lookup_id != first.lookup_id
    assert resolved(shared, project_id=uuid4()).lookup_id != first.lookup_id
    alone = resolved(CachePolicy(), api_key="lg_live_a")
    assert not alone.shared and alone.lookup_id != first.lookup_id
    assert alone.lookup_id != resolved(CachePolicy(), api_key="lg_live_b").lookup_id
    # Without the server's secret a sharing policy cannot share: per key, as before.
    unshared = rc.build_plan(inputs(api_key="lg_live_a"), shared, server_secret=None)
    assert not unshared.shared and unshared.lookup_id == alone.lookup_id


def test_the_semantic_header_and_the_project_threshold_decide_the_bucket() -> None:
    header = {"x-lg-cache-semantic": "0.9"}
    plan = resolved(CachePolicy(), headers=header)
    assert plan.semantic is not None and plan.semantic.threshold == Decimal("0.9")
    assert plan.semantic.embedding_model == "text-embedding-3-small"
    paraphrase = resolved(CachePolicy(), headers=header, text="Tell me Sweden's capital")
    assert paraphrase.semantic is not None
    assert paraphrase.semantic.bucket.bucket_id == plan.semantic.bucket.bucket_id
    assert paraphrase.lookup_id != plan.lookup_id
    other_key = resolved(CachePolicy(), headers=header, api_key="lg_live_b")
    assert other_key.semantic is not None
    assert other_key.semantic.bucket.bucket_id != plan.semantic.bucket.bucket_id
    project_default = CachePolicy(semantic_threshold=Decimal("0.85"))
    assert resolved(project_default).semantic is not None
    off = resolved(project_default, headers={"x-lg-cache-semantic": "off"})
    assert off.semantic is None
    assert resolved(CachePolicy()).semantic is None  # off by default
    for bad in ("0.1", "high", "1.01"):
        with pytest.raises(GatewayError) as caught:
            rc.options_from({"x-lg-cache-semantic": bad})
        assert caught.value.param == "x-lg-cache-semantic"
