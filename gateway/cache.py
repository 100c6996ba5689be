"""A read-through cache of aggregates the gateway reads on every request (API keys,
projects, price books). Entries are dropped as soon as the projection runner sees a newer
event for them (from this process or any other: each process follows the log on its own
position, see projections/runner.py), and expire after TTL_S as a backstop.
Loading runs in a worker thread: the event store client is synchronous."""

from __future__ import annotations

import functools
import threading
import time
from typing import Any
from uuid import UUID

import anyio.to_thread
from eventsourcing.application import AggregateNotFoundError

from domain.application import LedgerApplication

TTL_S = 30.0
ENTRIES_MAX = 100_000
_MISSING = object()


class AggregateCache:
    def __init__(self, app: LedgerApplication, ttl_s: float = TTL_S) -> None:
        self.app = app
        self.ttl_s = ttl_s
        self._entries: dict[UUID, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        # Loads in flight, and the newest version an eviction announced meanwhile: a load
        # that read the store just before another process's event must not be cached stale.
        self._loading: dict[UUID, int] = {}
        self._evicted_while_loading: dict[UUID, int] = {}
        # Temporary credentials (gateway/credentials.CredentialAuthenticator), attached at
        # start: what authenticate_key asks when the Bearer is a credential, not a key.
        self.credentials: Any = None

    def get_sync(self, aggregate_id: UUID, *, keep_miss: bool = False) -> Any | None:
        """The aggregate, or None. `keep_miss`: remember that it does not exist too (until
        its first event evicts that, or TTL_S) — for aggregates most ids never have, read on
        every request (a project's cache policy); never for keys, which must work at once."""
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(aggregate_id)
        if entry is not None and now - entry[0] < self.ttl_s:
            return None if entry[1] is _MISSING else entry[1]
        with self._lock:
            self._loading[aggregate_id] = self._loading.get(aggregate_id, 0) + 1
        try:
            aggregate: Any = self.app.repository.get(aggregate_id)
        except AggregateNotFoundError:
            aggregate = _MISSING
        finally:
            with self._lock:
                newer = self._evicted_while_loading.get(aggregate_id, 0)
                remaining = self._loading[aggregate_id] - 1
                if remaining:
                    self._loading[aggregate_id] = remaining
                else:
                    del self._loading[aggregate_id]
                    self._evicted_while_loading.pop(aggregate_id, None)
        with self._lock:
            if len(self._entries) >= ENTRIES_MAX:
                self._entries.clear()
            if aggregate is not _MISSING and getattr(aggregate, "version", 0) >= newer:
                # Never cache a miss for long: a key created a moment ago must work at once.
                self._entries[aggregate_id] = (now, aggregate)
            elif aggregate is _MISSING and keep_miss and not newer:
                self._entries[aggregate_id] = (now, _MISSING)
        return None if aggregate is _MISSING else aggregate

    async def get(self, aggregate_id: UUID, *, keep_miss: bool = False) -> Any | None:
        with self._lock:
            entry = self._entries.get(aggregate_id)
        if entry is not None and time.monotonic() - entry[0] < self.ttl_s:
            return None if entry[1] is _MISSING else entry[1]
        return await anyio.to_thread.run_sync(
            functools.partial(self.get_sync, aggregate_id, keep_miss=keep_miss)
        )

    def evict(self, aggregate_id: UUID, version: int | None = None) -> None:
        with self._lock:
            if aggregate_id in self._loading:
                self._evicted_while_loading[aggregate_id] = max(
                    self._evicted_while_loading.get(aggregate_id, 0), version or 1 << 62
                )
            entry = self._entries.get(aggregate_id)
            if entry is None:
                return
            if version is None or getattr(entry[1], "version", 0) < version:
                del self._entries[aggregate_id]
