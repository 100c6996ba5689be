"""The gateway's aggregate cache never keeps a copy older than an event it was told about."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from eventsourcing.application import AggregateNotFoundError

from gateway.cache import AggregateCache


@dataclass
class Versioned:
    id: Any
    version: int


class RacingRepository:
    """Returns version 1 and, while that read is "in flight", another process records v2."""

    def __init__(self, cache_ref: list[AggregateCache]) -> None:
        self.cache_ref = cache_ref
        self.version = 1
        self.reads = 0

    def get(self, aggregate_id: Any) -> Versioned:
        self.reads += 1
        loaded = Versioned(aggregate_id, self.version)
        if self.version == 1:
            self.version = 2
            self.cache_ref[0].evict(aggregate_id, 2)  # the follower sees v2 before we cache v1
        return loaded


class FakeApp:
    def __init__(self, repository: RacingRepository) -> None:
        self.repository = repository


def test_a_load_overtaken_by_an_eviction_is_not_cached_stale() -> None:
    ref: list[AggregateCache] = []
    repository = RacingRepository(ref)
    cache = AggregateCache(FakeApp(repository))  # type: ignore[arg-type]
    ref.append(cache)
    aggregate_id = uuid4()
    assert cache.get_sync(aggregate_id).version == 1  # this caller saw the read it made
    assert cache.get_sync(aggregate_id).version == 2  # but the next one reads again
    assert cache.get_sync(aggregate_id).version == 2
    assert repository.reads == 2  # and v2 is cached


def test_an_eviction_for_an_older_version_keeps_the_cached_copy() -> None:
    repository = RacingRepository([])
    repository.version = 5
    cache = AggregateCache(FakeApp(repository))  # type: ignore[arg-type]
    aggregate_id = uuid4()
    cache.get_sync(aggregate_id)
    cache.evict(aggregate_id, 3)
    cache.get_sync(aggregate_id)
    assert repository.reads == 1
    cache.evict(aggregate_id, 6)
    cache.get_sync(aggregate_id)
    assert repository.reads == 2


class SometimesMissingRepository:
    """Has no aggregate until `create` (then version 1), counting reads."""

    def __init__(self) -> None:
        self.exists = False
        self.reads = 0

    def get(self, aggregate_id: Any) -> Versioned:
        self.reads += 1
        if not self.exists:
            raise AggregateNotFoundError(aggregate_id)
        return Versioned(aggregate_id, 1)


def test_a_miss_is_remembered_only_when_asked_and_only_until_the_first_event() -> None:
    repository = SometimesMissingRepository()
    cache = AggregateCache(FakeApp(repository))  # type: ignore[arg-type]
    aggregate_id = uuid4()
    assert cache.get_sync(aggregate_id) is None
    assert cache.get_sync(aggregate_id) is None
    assert repository.reads == 2  # a key's miss is never kept: it must work at once
    assert cache.get_sync(aggregate_id, keep_miss=True) is None
    assert cache.get_sync(aggregate_id, keep_miss=True) is None
    assert cache.get_sync(aggregate_id) is None  # the remembered miss serves any caller
    assert repository.reads == 3
    repository.exists = True
    cache.evict(aggregate_id, 1)  # its first event, seen by the follower
    found = cache.get_sync(aggregate_id, keep_miss=True)
    assert found is not None and found.version == 1 and repository.reads == 4
