"""Cross-process write locks for the group-commit writer, on PostgreSQL advisory locks.

Several gateway processes share one PostgreSQL; each has its own single writer caching the
hot Accounts. domain/writer.py takes one of these locks per contended Account before it
decides a batch (see its module docstring for the protocol), so two processes never decide
on the same Account at once and their saves never collide. This module is the
infrastructure half: one dedicated autocommit connection per writer holding session-level
advisory locks (`pg_advisory_lock`), which the server frees by itself when the process dies
(kill -9 included) or its connection drops — a crashed process never leaves an Account
locked.

Failure modes, and why each stays exact:
- lock wait longer than `lock_timeout_s` (a stuck peer): the acquire raises, the writer
  fails that batch's callers (before any provider is called for an admission) and starts
  afresh;
- the lock connection is lost while we believe we hold a lock: another process may write
  the Account; our next save then conflicts on the event table's primary key and the writer
  redoes the batch against fresh state (optimistic concurrency is the backstop, the lock
  only removes the contention);
- two aggregate ids hashing to one lock key: they are serialised together, never less.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from urllib.parse import parse_qs, unquote, urlparse
from uuid import UUID

import psycopg

from domain.application import is_postgres_url

log = logging.getLogger("ledgergate.write_locks")

LOCK_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10


def lock_key(namespace: str, aggregate_id: UUID) -> int:
    """A signed 64-bit advisory-lock key for an aggregate, scoped by the store's schema
    (advisory locks are per database; two schemas in one database must not share keys)."""
    digest = hashlib.blake2b(f"{namespace}:{aggregate_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class AdvisoryLocks:
    """`domain.writer.AggregateLocks` on PostgreSQL session advisory locks."""

    def __init__(self, database_url: str, lock_timeout_s: float = LOCK_TIMEOUT_S) -> None:
        parsed = urlparse(database_url)
        query = parse_qs(parsed.query)
        self.namespace = query.get("schema", ["public"])[0]
        self._conninfo = {
            "host": parsed.hostname or "127.0.0.1",
            "port": parsed.port or 5432,
            "dbname": (parsed.path or "/postgres").lstrip("/") or "postgres",
            "user": unquote(parsed.username or "postgres"),
            "password": unquote(parsed.password or ""),
            "connect_timeout": CONNECT_TIMEOUT_S,
            "application_name": "ledgergate-writer-locks",
        }
        self.lock_timeout_s = lock_timeout_s
        self._connection: psycopg.Connection[tuple[object, ...]] | None = None
        self._held: list[int] = []

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._connection is None or self._connection.closed:
            self._held.clear()  # a new session holds nothing
            connection = psycopg.connect(autocommit=True, **self._conninfo)  # type: ignore[arg-type]
            connection.execute(
                f"SET lock_timeout = {int(self.lock_timeout_s * 1000)}"  # our own integer
            )
            self._connection = connection
        return self._connection

    def connect(self) -> None:
        """Open the lock session now (the warm-up, gateway/warmup.py), so the first batch of
        the first request does not pay a PostgreSQL connect (3–9 ms here)."""
        self._connect()

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.closed

    def _keys(self, aggregate_ids: Sequence[UUID]) -> list[int]:
        return [lock_key(self.namespace, aggregate_id) for aggregate_id in aggregate_ids]

    def try_acquire(self, aggregate_ids: Sequence[UUID]) -> bool:
        connection = self._connect()
        taken: list[int] = []
        try:
            for key in self._keys(aggregate_ids):
                row = connection.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
                if not (row and row[0]):
                    for got in taken:
                        connection.execute("SELECT pg_advisory_unlock(%s)", (got,))
                    return False
                taken.append(key)
        except psycopg.Error:
            self._drop()
            raise
        self._held.extend(taken)
        return True

    def acquire(self, aggregate_ids: Sequence[UUID]) -> None:
        connection = self._connect()
        try:
            for key in self._keys(aggregate_ids):
                connection.execute("SELECT pg_advisory_lock(%s)", (key,))
                self._held.append(key)
        except psycopg.Error:
            self._drop()  # the session ends: whatever it held is freed by the server
            raise

    def release_all(self) -> None:
        if not self._held or self._connection is None:
            self._held.clear()
            return
        self._held.clear()
        try:
            self._connection.execute("SELECT pg_advisory_unlock_all()")
        except psycopg.Error:
            self._drop()
            raise

    def close(self) -> None:
        self._drop()

    def _drop(self) -> None:
        self._held.clear()
        if self._connection is not None:
            try:
                self._connection.close()
            except psycopg.Error:
                log.debug("closing the lock connection failed", exc_info=True)
            self._connection = None


def locks_for(database_url: str | None) -> AdvisoryLocks | None:
    """The lock strategy for a store: advisory locks on PostgreSQL; none on SQLite, where
    one process serves (SQLite's own file lock already serialises writers)."""
    if is_postgres_url(database_url):
        assert database_url is not None
        return AdvisoryLocks(database_url)
    return None
