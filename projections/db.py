"""The read-model database: the same PostgreSQL database as the event store in production,
a separate SQLite file (views.sqlite) on the embedded default.

Every SQLite/PostgreSQL difference the views and queries meet is defined here, once:
- placeholders: SQL is written once with `%s`; for SQLite they become `?` (`placeholders(n)`
  spells an IN list);
- instants: TIMESTAMPTZ on PostgreSQL, fixed-width ISO text on SQLite (`ReadStore.instant`);
  a few tables keep instants as that ISO text on both (lg_router_outcomes.observed_at,
  lg_auth_failures.received_at, lg_project_events.recorded_at): those take `iso()`;
- days: DATE on PostgreSQL, YYYY-MM-DD text on SQLite (`ReadStore.day`);
- positions and row locks: a view's tracking row, locked for the transaction on PostgreSQL
  (`Tx.tracked_position`, `Tx.for_update`; SQLite's write transaction is exclusive already);
- decimals: NUMERIC(38, 9) / NUMERIC(38, 12) on PostgreSQL, exact text on SQLite; a read
  renders them one way on both (`decimal_text` and the scales below);
- upserts: `INSERT ... ON CONFLICT (...) DO NOTHING | DO UPDATE` is the same on both.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
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
    # isoformat is strftime's "%Y-%m-%dT%H:%M:%S.%f+00:00" at a sixth of its cost (and keeps
    # four digits of year below 1000, where %Y does not): the projection worker formats
    # several instants per event.
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def as_datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def as_decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


# --- one rendering of every decimal a read returns (README "Decimals in reads") ------------
# A fixed scale per kind, the scale PostgreSQL stores it at, on every backend: money at the
# internal scale 1e-9 ("12.500000000"), prices per million tokens at 1e-9, FX rates at
# 1e-12, fee rates at 1e-6. Rounding ROUND_HALF_UP, as PostgreSQL's NUMERIC rounds.
MONEY_SCALE = 9
PRICE_SCALE = 9
FX_RATE_SCALE = 12
FEE_RATE_SCALE = 6


def decimal_text(value: Any, scale: int) -> str | None:
    """`value` (Decimal, text or number as a backend returns it) at `scale` decimals."""
    decimal = as_decimal(value)
    if decimal is None:
        return None
    return format(decimal.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP), "f")


def money_text(value: Any) -> str | None:
    return decimal_text(value, MONEY_SCALE)


def price_text(value: Any) -> str | None:
    return decimal_text(value, PRICE_SCALE)


def fx_rate_text(value: Any) -> str | None:
    return decimal_text(value, FX_RATE_SCALE)


def fee_rate_text(value: Any) -> str | None:
    return decimal_text(value, FEE_RATE_SCALE)


def time_text(value: Any) -> str | None:
    """An instant as a read returns it: ISO 8601 with its UTC offset, on every backend."""
    moment = as_datetime(value)
    return moment.isoformat() if moment else None


def time_range(
    clauses: list[str],
    params: list[Any],
    column: str,
    since: datetime | None,
    until: datetime | None,
    as_param: Callable[[datetime], Any],
) -> None:
    """Add `since <= column < until` (either bound optional) to a query's clauses, each
    bound turned into a parameter by `as_param` (`ReadStore.instant` for TIMESTAMPTZ
    columns, `iso` for the instants kept as text on both backends)."""
    if since is not None:
        clauses.append(f"{column} >= %s")
        params.append(as_param(since))
    if until is not None:
        clauses.append(f"{column} < %s")
        params.append(as_param(until))


def equal_filters(
    clauses: list[str], params: list[Any], filters: Iterable[tuple[str, Any]]
) -> None:
    """Add `column = value` to a query's clauses for each (column, value) of `filters`
    whose value is given (not None): an optional filter a caller left out selects all."""
    for column, value in filters:
        if value is not None:
            clauses.append(f"{column} = %s")
            params.append(value)


def page_limit(limit: int, limit_max: int) -> int:
    """A requested page size, held within 1..`limit_max`."""
    return max(1, min(limit, limit_max))


def placeholders(count: int) -> str:
    """`%s, %s, ...` for an IN list of `count` values."""
    return ", ".join(["%s"] * count)


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

    def fetch_page(
        self, sql: str, params: Sequence[Any], limit: int, *, offset: int | None = None
    ) -> tuple[list[dict[str, Any]], bool]:
        """A page of `sql` (a SELECT with its ORDER BY, without LIMIT): up to `limit` rows
        (after `offset` rows, if given), and whether more follow, known by reading one row
        past the page."""
        bounds = " LIMIT %s" if offset is None else " LIMIT %s OFFSET %s"
        values = (limit + 1,) if offset is None else (limit + 1, offset)
        rows = self.execute(sql + bounds, (*params, *values)).fetchall()
        return rows[:limit], len(rows) > limit

    def insert_rows(
        self,
        table: str,
        columns: Sequence[tuple[str, str]],
        rows: Sequence[Sequence[Any]],
        suffix: str = "",
    ) -> None:
        """Insert `rows` (tuples in the order of `columns`, given as (name, PostgreSQL type))
        in ONE statement on PostgreSQL: `INSERT … SELECT * FROM unnest(%b::type[], …)`, one
        binary array per column, so a batch of any size is one fixed, prepared statement. A
        pipelined `executemany` still ran one INSERT per row, and the projection worker
        inserts three rows per event (its index, the Merkle leaf, and its nodes): half of
        the database's CPU for the worker went into statement overhead. SQLite runs the
        plain INSERT per row (`executemany`, in process). `suffix` is appended as is
        (an ON CONFLICT clause)."""
        if not rows:
            return
        names = ", ".join(name for name, _ in columns)
        if self.store.dialect == "postgres":
            # %b: the arrays go in binary. psycopg's text-format list dumper quotes every
            # element through a regular expression, 12 µs per JSON payload: a third of the
            # projection worker's time. Binary is 25 times cheaper.
            arrays = ", ".join(f"%b::{kind}[]" for _, kind in columns)
            self.cursor.execute(
                f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) {suffix}",  # noqa: S608
                [list(column) for column in zip(*rows, strict=True)],
            )
            return
        marks = ", ".join("?" for _ in columns)
        self.cursor.executemany(
            f"INSERT INTO {table} ({names}) VALUES ({marks}) {suffix}",  # noqa: S608
            rows,
        )

    @property
    def rowcount(self) -> int:
        return int(self.cursor.rowcount)

    @property
    def for_update(self) -> str:
        """The suffix that locks the rows a SELECT reads for the transaction: " FOR UPDATE"
        on PostgreSQL; nothing on SQLite, whose write transaction is exclusive already."""
        return " FOR UPDATE" if self.store.dialect == "postgres" else ""

    def tracked_position(self, view: str, *, lock: bool = False) -> int:
        """The position `view` has applied (0 before its first event). With `lock`, the
        tracking row is locked for the transaction on PostgreSQL (SQLite's write
        transaction is exclusive already)."""
        suffix = self.for_update if lock else ""
        row = self.execute(
            f"SELECT position FROM lg_tracking WHERE view = %s{suffix}", (view,)
        ).fetchone()
        return int(row["position"]) if row else 0

    def instant(self, moment: datetime | None) -> Any:
        return self.store.instant(moment)


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

    def read_page(
        self, view: str, sql: str, params: Sequence[Any], limit: int, *, offset: int | None = None
    ) -> tuple[list[dict[str, Any]], bool, int]:
        """A page of `sql` (`Tx.fetch_page`), whether more follow, and the position `view`
        had applied, read before the page so the page reflects at least that position."""
        with self.transaction(write=False) as tx:
            position = tx.tracked_position(view)
            rows, has_more = tx.fetch_page(sql, params, limit, offset=offset)
        return rows, has_more, position

    def dedicated_connection(self) -> Any:
        """A PostgreSQL connection of its own (autocommit, same schema), outside the pool:
        for session state that must live exactly as long as one holder, such as the Kafka
        relay's advisory lock."""
        import psycopg

        if self.dialect != "postgres":
            raise RuntimeError("dedicated connections exist on PostgreSQL only")
        return psycopg.connect(self._connect_url, **{**self._connect_kwargs, "autocommit": True})

    def instant(self, moment: datetime | None) -> Any:
        """An instant as a parameter: aware datetime on PostgreSQL, ISO text on SQLite."""
        if moment is None:
            return None
        return iso(moment) if self.dialect == "sqlite" else moment

    def day(self, day: date) -> Any:
        """A UTC day as a parameter: DATE on PostgreSQL, YYYY-MM-DD text on SQLite."""
        return day.isoformat() if self.dialect == "sqlite" else day

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
        """Apply the versioned SQL files of migrations/ that are not applied yet, in name
        order. A version is written once, in PostgreSQL's dialect (migrations/postgres/);
        SQLite runs its translation (`sqlite_script`), or migrations/sqlite/<version>.sql
        where a file there says something the translation cannot (an override)."""
        versions = migration_scripts(self.dialect)
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
            for version, script in versions:
                if version in done:
                    continue
                for statement in _split_statements(script):
                    tx.cursor.execute(statement)
                tx.execute(
                    "INSERT INTO lg_migrations (version, applied_at) VALUES (%s, %s)",
                    (version, iso(datetime.now(UTC))),
                )
                applied.append(version)
        return applied


# PostgreSQL column types → the SQLite affinity each read model stores them as: integers and
# positions as INTEGER, instants and days as ISO text, money and rates as decimal text (read
# back through as_decimal), bytes as BLOB, flags as 0/1.
SQLITE_TYPES = (
    (re.compile(r"\bBIGINT\b"), "INTEGER"),
    (re.compile(r"\bTIMESTAMPTZ\b"), "TEXT"),
    (re.compile(r"\bDATE\b"), "TEXT"),
    (re.compile(r"\bBYTEA\b"), "BLOB"),
    (re.compile(r"\bBOOLEAN\b"), "INTEGER"),
    (re.compile(r"\bNUMERIC\(\d+, ?\d+\)"), "TEXT"),
    (re.compile(r"\bDOUBLE PRECISION\b"), "REAL"),
)


def sqlite_script(postgres_script: str) -> str:
    """A migration written for PostgreSQL, as SQLite runs it (column types only: the DDL the
    read models use is otherwise the same in both)."""
    for pattern, sqlite_type in SQLITE_TYPES:
        postgres_script = pattern.sub(sqlite_type, postgres_script)
    return postgres_script


def migration_scripts(dialect: str) -> list[tuple[str, str]]:
    """(version, script) for every migration, in version order, as `dialect` runs it."""
    root = resources.files("migrations")
    postgres = {
        entry.name.removesuffix(".sql"): entry
        for entry in root.joinpath("postgres").iterdir()
        if entry.name.endswith(".sql")
    }
    overrides = {
        entry.name.removesuffix(".sql"): entry
        for entry in root.joinpath("sqlite").iterdir()
        if entry.name.endswith(".sql")
    }
    scripts: list[tuple[str, str]] = []
    for version in sorted(postgres.keys() | (overrides.keys() if dialect == "sqlite" else set())):
        if dialect == "postgres":
            scripts.append((version, postgres[version].read_text()))
        elif version in overrides:
            scripts.append((version, overrides[version].read_text()))
        else:
            scripts.append((version, sqlite_script(postgres[version].read_text())))
    return scripts


def _split_statements(script: str) -> list[str]:
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]
