"""The event-sourced application: one event store for every aggregate, configured from
LEDGERGATE_DATABASE_URL (unset → an SQLite file under ./.ledgergate/)."""

from __future__ import annotations

import os
import time
from datetime import date
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlparse
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError, InternalError, JSONTranscoder, Transcoding

from domain.account import Account

DEFAULT_DATA_DIR = ".ledgergate"
EVENTS_FILE = "events.sqlite"


class DateAsISO(Transcoding):
    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


class LedgerApplication(Application[UUID]):
    name = "Ledgergate"
    # A hot account gathers millions of events; a snapshot every N keeps loading it cheap.
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {Account: 1000}

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(DateAsISO())

    def _take_snapshots(self, processing_event: Any) -> None:
        """Snapshot from the aggregate just saved, not by reloading it from the store.

        The library's default re-reads the aggregate (the previous snapshot plus up to an
        interval of events) for every snapshot: on a hot account that replay cost ~130 ms
        per 1,000 events inside the single writer's save. The in-memory aggregate has just
        had exactly the recorded events applied, so its state at its current version is
        the recorded state; a snapshot at that version is as valid as one at the multiple."""
        if not (self.snapshots and self.snapshotting_intervals):
            return
        due: dict[Any, Any] = {}
        for event in processing_event.events:
            aggregate = processing_event.aggregates.get(event.originator_id)
            interval = self.snapshotting_intervals.get(type(aggregate))
            if interval is not None and event.originator_version % interval == 0:
                due[event.originator_id] = aggregate
        for aggregate in due.values():
            snapshot_class = getattr(type(aggregate), "Snapshot", type(self).snapshot_class)
            if snapshot_class is not None:
                self.snapshots.put([snapshot_class.take(aggregate)])


# The event store's connections per process: POOL_SIZE_DEFAULT kept open (`?pool_size=` in
# the URL sets it), up to POOL_OVERFLOW_MAX more in a burst (closed again once idle). A
# serving process keeps 2-3 busy at concurrency 32 (its saver, its writer's catch-up reads,
# its follower), sampled from pg_stat_activity with two workers and the projection worker;
# 10 held open per process put 41 sessions on the server for 3 in use, and N processes x 10
# meets PostgreSQL's default max_connections (100) at a handful of workers and replicas.
POOL_SIZE_DEFAULT = 4
POOL_OVERFLOW_MAX = 20


def is_postgres_url(url: str | None) -> bool:
    return bool(url) and str(url).startswith(("postgresql://", "postgres://"))


def store_env(
    database_url: str | None, data_dir: str | os.PathLike[str] | None = None
) -> dict[str, str]:
    """Translate our one URL into the eventsourcing library's settings."""
    if is_postgres_url(database_url):
        assert database_url is not None
        parsed = urlparse(database_url)
        query = parse_qs(parsed.query)
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": (parsed.path or "/postgres").lstrip("/") or "postgres",
            "POSTGRES_HOST": parsed.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parsed.port or 5432),
            "POSTGRES_USER": unquote(parsed.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parsed.password or ""),
            "POSTGRES_POOL_SIZE": query.get("pool_size", [str(POOL_SIZE_DEFAULT)])[0],
            "POSTGRES_MAX_OVERFLOW": str(POOL_OVERFLOW_MAX),
            "POSTGRES_CONNECT_TIMEOUT": "10",
            "POSTGRES_LOCK_TIMEOUT": "10",
            "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "30",
        }
        if "schema" in query:
            env["POSTGRES_SCHEMA"] = query["schema"][0]
        return env
    if database_url and database_url.startswith("sqlite:///"):
        path = Path(database_url[len("sqlite:///") :])
    else:
        path = Path(data_dir or DEFAULT_DATA_DIR) / EVENTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(path),
        "SQLITE_LOCK_TIMEOUT": "30",
    }


def open_application(
    database_url: str | None = None, data_dir: str | None = None, **extra: Any
) -> LedgerApplication:
    env = store_env(database_url, data_dir)
    env.update({k: str(v) for k, v in extra.items()})
    for attempt in range(1, OPEN_ATTEMPTS_MAX + 1):
        try:
            return LedgerApplication(env=env)
        except (InternalError, IntegrityError):
            # Several processes starting at once on a fresh PostgreSQL schema each create
            # the event tables (CREATE TABLE IF NOT EXISTS): all but one may fail with "tuple
            # concurrently updated" or a duplicate catalog row. The tables are there a moment
            # later; a real storage fault fails every attempt and is raised.
            if attempt == OPEN_ATTEMPTS_MAX:
                raise
            time.sleep(OPEN_RETRY_S * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


OPEN_ATTEMPTS_MAX = 5
OPEN_RETRY_S = 0.2
