"""The response cache's pieces without HTTP: keys, sealing, bounds and expiry."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from domain.clock import FixedClock
from domain.tiers import effective_tier
from gateway import response_cache as rc
from gateway.errors import GatewayError
from projections.db import ReadStore

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}


def plan(api_key: str = "lg_live_a", **changes: Any) -> rc.CachePlan:
    arguments: dict[str, Any] = {
        "endpoint": "chat.completions",
        "api_key": api_key,
        "project_id": PROJECT,
        "scope": effective_tier("unrestricted").cache_scope(),
        "models": ("gpt-4o-mini",),
        "pii_policy": None,
        "stream": False,
        "screened_body": BODY,
        **changes,
    }
    made = rc.plan_request({}, BODY, **arguments)
    assert made is not None
    return made


PROJECT = uuid4()


def test_the_lookup_id_changes_with_key_project_tier_models_stream_and_body() -> None:
    base = plan().lookup_id
    assert plan().lookup_id == base  # deterministic
    variants = [
        plan("lg_live_b"),
        plan(project_id=uuid4()),
        plan(scope=effective_tier("eu_strict").cache_scope()),
        plan(models=("gpt-4o",)),
        plan(stream=True),
        plan(screened_body={**BODY, "messages": [{"role": "user", "content": "ho"}]}),
    ]
    assert len({variant.lookup_id for variant in variants} | {base}) == len(variants) + 1
    # The raw key never appears in what is stored or named.
    assert "lg_live_a" not in base and "lg_live_a" not in repr(plan())


def test_an_entry_sealed_under_one_key_cannot_be_opened_under_another() -> None:
    entry = rc.CacheEntry("lg_req_1", "gpt-4o-mini", "openai", body={"text": "secret answer"})
    sealed = rc.seal(plan(), entry)
    assert sealed is not None and "secret answer" not in sealed
    assert rc.unseal(plan(), sealed) == entry
    assert rc.unseal(plan("lg_live_b"), sealed) is None
    other = plan(stream=True)  # same key, another request: another entry key and lookup id
    assert rc.unseal(other, sealed) is None


def test_modes_and_cache_control_decide_reads_and_writes() -> None:
    assert rc.options_from({}) == rc.CacheOptions()
    assert not rc.eligible(rc.options_from({}), {"temperature": 0.5})
    assert rc.eligible(rc.options_from({}), {"seed": 1})
    assert not rc.eligible(rc.options_from({}), {"temperature": False})
    assert rc.eligible(rc.options_from({"x-bt-use-cache": "always"}), {"temperature": 1})
    never = rc.options_from({"x-lg-use-cache": "never"})
    assert not rc.eligible(never, BODY) and not never.read and not never.write
    both = rc.options_from({"cache-control": "no-cache, no-store"})
    assert not both.read and not both.write
    assert rc.options_from({"x-lg-cache-ttl": "60"}).ttl_s == 60
    with pytest.raises(GatewayError):
        rc.options_from({"x-lg-cache-ttl": "-1"})


def test_the_store_is_bounded_evicting_the_oldest_and_purges_expired_entries(
    tmp_path: Path,
) -> None:
    store = ReadStore(None, str(tmp_path))
    store.migrate()
    clock = FixedClock(datetime(2026, 12, 1, 12, tzinfo=UTC))
    cache = rc.ResponseCacheStore(store, clock, entries_max=3, bytes_max=10_000)
    for index in range(5):
        clock.advance(seconds=1)
        cache.put_sync(f"id{index}", "x" * 100, ttl_s=60)
    assert [cache.get_sync(f"id{index}") is not None for index in range(5)] == [
        False,
        False,
        True,
        True,
        True,
    ]
    cache.bytes_max = 250  # now at most two entries of 100 characters
    cache.put_sync("id5", "y" * 100, ttl_s=60)
    assert [cache.get_sync(f"id{i}") is not None for i in (3, 4, 5)] == [False, True, True]
    clock.advance(seconds=61)
    assert cache.get_sync("id5") is None  # expired: never served
    assert cache.purge_expired_sync() == 2
    store.close()
