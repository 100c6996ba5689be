"""Cross-process write locks for the group-commit writer, on PostgreSQL advisory locks.

Several gateway processes share one PostgreSQL; each has its own single writer caching the
hot Accounts. domain/writer.py takes one of these locks per contended Account before it
decides a batch (see its module docstring for the protocol), so two processes never decide
on the same Account at once and their saves never collide. This module is the
infrastructure half: one dedicated autocommit connection per writer holding session-level
advisory locks (`pg_advisory_lock`), which the server frees by itself when the process dies
(kill -9 included) or its connection drops — a crashed process never leaves an Account
locked.

A writer keeps its locks while nobody else asks for them (domain/writer.py): a process
serving alone never pays a lock hand-over and catch-up read per request. A session about
to wait for a lock first says so (`NOTIFY lg_write_lock_wanted, '<key>'`); every lock
session LISTENs, and `wanted()` reads, without a round trip or a wait, whether another
session has asked for a lock this one holds. The holder lets go at once when idle, or
after its fair turn when busy.

Failure modes, and why each stays exact:
- lock wait longer than `lock_timeout_s` (a stuck peer): the acquire raises, the writer
  fails that batch's callers (before any provider is called for an admission) and starts
  afresh;
- the lock connection is lost while we believe we hold a lock: another process may write
  the Account; our next save then conflicts on the event table's primary key and the writer
  redoes the batch against fresh state (optimistic concurrency is the backstop, the lock
  only removes the contention);
- two aggregate ids hashing to one lock key: they are serialised together, never less;
- an ask that misses its mark (it reached a process just before that process let go and
  took the lock again, or before it took the lock at all): the waiter asks again every
  ASK_INTERVAL_S while it waits, an idle holder lets go after LOCK_IDLE_S_MAX anyway, and
  the whole wait is bounded by `lock_timeout_s`; a stale ask (one meant for an earlier
  holder) makes the holder let go once too early, nothing worse.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from urllib.parse import parse_qs, unquote, urlparse
from uuid import UUID

import psycopg

from domain.application import is_postgres_url

log = logging.getLogger("ledgergate.write_locks")

LOCK_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10
# One channel per database: the payload is the lock key, already scoped by the schema.
WANTED_CHANNEL = "lg_write_lock_wanted"
# How often a process waiting for a lock asks its holder again.
ASK_INTERVAL_S = 0.1


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
        self._wanted: set[int] = set()  # keys another session asked for since our last release
        self._backend_pid = 0

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._connection is None or self._connection.closed:
            self._held.clear()  # a new session holds nothing
            connection = psycopg.connect(autocommit=True, **self._conninfo)  # type: ignore[arg-type]
            # One wait lasts at most an ask interval; `_wait_for` asks again and waits on,
            # up to `lock_timeout_s` in all.
            connection.execute(f"SET lock_timeout = {int(ASK_INTERVAL_S * 1000)}")
            # What arrives while a statement runs on this connection reaches the handler;
            # what arrives while it is idle is read by `wanted()`.
            connection.add_notify_handler(self._on_notify)
            connection.execute(f"LISTEN {WANTED_CHANNEL}")
            self._backend_pid = connection.info.backend_pid
            self._wanted.clear()
            self._connection = connection
        return self._connection

    def _on_notify(self, notify: psycopg.Notify) -> None:
        if notify.channel != WANTED_CHANNEL or notify.pid == self._backend_pid:
            return  # our own ask, echoed back to us
        try:
            self._wanted.add(int(notify.payload))
        except ValueError:
            log.debug("a lock-wanted notification without a key: %r", notify.payload[:40])

    def wanted(self) -> bool:
        """Has another session asked for a lock this one holds? Reads only what the server
        has already sent (libpq's socket is non-blocking): no round trip, no wait. A broken
        connection answers True, so the writer lets go (the server has freed them anyway)."""
        if not self._held or self._connection is None:
            return False
        pgconn = self._connection.pgconn
        try:
            pgconn.consume_input()
            # Handed to psycopg's own dispatch, as its generators do after a statement: it
            # decodes them in the connection's encoding and calls `_on_notify`.
            while (notify := pgconn.notifies()) is not None:
                if pgconn.notify_handler is not None:
                    pgconn.notify_handler(notify)
        except psycopg.Error:
            self._drop()
            return True
        return not self._wanted.isdisjoint(self._held)

    def fileno(self) -> int | None:
        """The lock session's socket: readable once the server has sent something, an ask
        among it (see `wanted`). The writer sleeps on it while it holds locks idle."""
        if self._connection is None or self._connection.closed:
            return None
        return self._connection.fileno()

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
                row = connection.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
                if not (row and row[0]):
                    self._wait_for(connection, key)
                self._held.append(key)
        except psycopg.Error:
            self._drop()  # the session ends: whatever it held is freed by the server
            raise

    def _wait_for(self, connection: psycopg.Connection[tuple[object, ...]], key: int) -> None:
        """Wait for a lock held elsewhere, asking its holder to let go, and asking again
        every ASK_INTERVAL_S: an ask can miss its mark (it reached a process that let go
        and cleared it just before taking the lock again, or one that took the lock only
        after the ask), so one ask per wait is not enough. Each ask is a statement of its
        own, so it is delivered now, not when the wait ends. Raises LockNotAvailable after
        `lock_timeout_s` in all."""
        deadline = time.monotonic() + self.lock_timeout_s
        while True:
            connection.execute("SELECT pg_notify(%s, %s)", (WANTED_CHANNEL, str(key)))
            try:
                connection.execute("SELECT pg_advisory_lock(%s)", (key,))  # ≤ ASK_INTERVAL_S
                return
            except psycopg.errors.LockNotAvailable:
                if time.monotonic() >= deadline:
                    raise

    def release_all(self) -> None:
        self._wanted.clear()  # whoever asked may now take them
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
        self._wanted.clear()
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
