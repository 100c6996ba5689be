"""The read-model database: the same PostgreSQL database as the event store in production,
a separate SQLite file (views.sqlite) on the embedded default. SQL is written once with
`%s` placeholders; for SQLite they become `?`."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from domain.application import DEFAULT_DATA_DIR, is_postgres_url

VIEWS_FILE = "views.sqlite"
SQLITE_BUSY_TIMEOUT_S = 30.0
MIGRATION_LOCK_KEY = 7_334_221  # pg_advisory_xact_lock key serialising concurrent migrations

sqlite3.register_adapter(Decimal, lambda d: format(d, "f"))
sqlite3.register_adapter(datetime, lambda t: iso(t))
sqlite3.register_adapter(bool, int)


def iso(moment: datetime | None) -> str | None:
    """Fixed-width UTC ISO text: sorts lexicographically in SQLite."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def as_datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def as_decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


class Tx:
    """One transaction on the read store, dialect-neutral."""

    def __init__(self, store: ReadStore, cursor: Any) -> None:
        self.store = store
        self.cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Tx:
        self.cursor.execute(self.store.sql(sql), tuple(params))
        return self

    def fetchone(self) -> dict[str, Any] | None:
        row = self.cursor.fetchone()
        return None if row is None else dict(row)

    def fetchall(self) -> list[dict[str, Any]]:
        return [dict(row) for row in self.cursor.fetchall()]

    @property
    def rowcount(self) -> int:
        return int(self.cursor.rowcount)


class ReadStore:
    def __init__(self, database_url: str | None = None, data_dir: str | None = None) -> None:
        self.database_url = database_url
        if is_postgres_url(database_url):
            from psycopg.rows import dict_row
            from psycopg_pool import ConnectionPool

            assert database_url is not None
            self.dialect = "postgres"
            url = re.sub(r"([?&])(schema|pool_size)=[^&]*", r"\1", database_url).rstrip("?&")
            schema = re.search(r"[?&]schema=([^&]+)", database_url)
            options = f"-c search_path={schema.group(1)},public" if schema else None
            kwargs: dict[str, Any] = {"row_factory": dict_row, "autocommit": False}
            if options:
                kwargs["options"] = options
            self._connect_url, self._connect_kwargs = url, kwargs
            self._pool = ConnectionPool(url, min_size=1, max_size=10, kwargs=kwargs, open=True)
        else:
            self.dialect = "sqlite"
            if database_url and database_url.startswith("sqlite:///"):
                events_path = Path(database_url[len("sqlite:///") :])
                self.path = events_path.with_name(VIEWS_FILE)
            else:
                self.path = Path(data_dir or DEFAULT_DATA_DIR) / VIEWS_FILE
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._local = threading.local()
            self._connections: list[sqlite3.Connection] = []
            self._connections_lock = threading.Lock()

    # --- connections ----------------------------------------------------------------------

    def _sqlite_connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(
                str(self.path),
                timeout=SQLITE_BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Tx]:
        if self.dialect == "postgres":
            with self._pool.connection() as connection:
                with connection.transaction():
                    with connection.cursor() as cursor:
                        yield Tx(self, cursor)
            return
        sqlite_connection = self._sqlite_connection()
        sqlite_cursor = sqlite_connection.cursor()
        sqlite_cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield Tx(self, sqlite_cursor)
        except BaseException:
            sqlite_cursor.execute("ROLLBACK")
            raise
        else:
            sqlite_cursor.execute("COMMIT")
        finally:
            sqlite_cursor.close()

    def dedicated_connection(self) -> Any:
        """A PostgreSQL connection of its own (autocommit, same schema), outside the pool:
        for session state that must live exactly as long as one holder, such as the Kafka
        relay's advisory lock."""
        import psycopg

        if self.dialect != "postgres":
            raise RuntimeError("dedicated connections exist on PostgreSQL only")
        return psycopg.connect(self._connect_url, **{**self._connect_kwargs, "autocommit": True})

    def sql(self, statement: str) -> str:
        return statement.replace("%s", "?") if self.dialect == "sqlite" else statement

    def close(self) -> None:
        if self.dialect == "postgres":
            self._pool.close()
        else:
            with self._connections_lock:
                for connection in self._connections:
                    connection.close()
                self._connections.clear()
            self._local = threading.local()

    # --- schema ---------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply the versioned SQL files in migrations/<dialect>/ that are not applied yet."""
        folder = resources.files("migrations").joinpath(self.dialect)
        files = sorted(
            (entry for entry in folder.iterdir() if entry.name.endswith(".sql")),
            key=lambda e: e.name,
        )
        applied: list[str] = []
        with self.transaction() as tx:
            if self.dialect == "postgres":
                tx.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            tx.execute(
                "CREATE TABLE IF NOT EXISTS lg_migrations (version TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            done = {
                row["version"] for row in tx.execute("SELECT version FROM lg_migrations").fetchall()
            }
            for entry in files:
                version = entry.name.removesuffix(".sql")
                if version in done:
                    continue
                script = entry.read_text()
                for statement in _split_statements(script):
                    tx.cursor.execute(statement)
                tx.execute(
                    "INSERT INTO lg_migrations (version, applied_at) VALUES (%s, %s)",
                    (version, iso(datetime.now(UTC))),
                )
                applied.append(version)
        return applied


def _split_statements(script: str) -> list[str]:
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]
