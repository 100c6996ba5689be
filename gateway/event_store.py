"""The serving writer's PostgreSQL recorder: one round trip per group commit.

eventsourcing's PostgreSQL recorder records a batch in a pipelined transaction of six
statements (BEGIN, SET LOCAL lock_timeout, LOCK TABLE … IN EXCLUSIVE MODE, NOTIFY, the
INSERT, COMMIT) with two synchronisation points: measured here, 14 socket waits and 0.6 ms
of the saver thread's CPU per save in isolation, twice that under load, for a transaction
whose durable commit costs PostgreSQL about 0.5 ms. This recorder does the same work in one
statement: a PL/pgSQL function taking the batch as one array per column (ids, versions,
topics, states), run in autocommit, so the function call *is* the transaction:

- it takes the same EXCLUSIVE lock on the event table first (insert order = commit order, so
  a follower tailing notification ids never passes over a gap that is filled later: the
  library's own DB-function variant leaves this lock out, which is why it is not used);
- it sends the same NOTIFY; it inserts with the same statement shape and returns the
  notification ids in insertion order;
- a primary-key conflict (another process wrote the same aggregate version) is the same
  IntegrityError, so the writer's conflict handling (domain/writer.py) is unchanged.

Only the serving writer uses it (gateway/bootstrap.py); every other process (the projection
worker, the CLI, finance replays) keeps the library's recorder: both take the same lock and
write the same rows, so they interleave exactly as two library recorders would. The function
has its own name, so processes of either kind never replace each other's definition.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import retry
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

RECORDER_TOPIC = "gateway.event_store:OneTripRecorder"


class OneTripRecorder(PostgresApplicationRecorder):
    def __init__(
        self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.one_trip_function = f"lg_insert_{self.events_table_name}"[:63]
        names = {
            "schema": Identifier(self.datastore.schema),
            "function": Identifier(self.one_trip_function),
            "table": Identifier(self.events_table_name),
            "id_type": SQL(self.datastore.originator_id_type),
        }
        self.sql_create_statements.append(
            SQL(
                "CREATE OR REPLACE FUNCTION {schema}.{function}("
                "ids {id_type}[], versions bigint[], topics text[], states bytea[]) "
                "RETURNS SETOF bigint LANGUAGE plpgsql AS $BODY$ "
                "BEGIN "
                "SET LOCAL lock_timeout = '{lock_timeout}s'; "
                "LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE; "
                "NOTIFY {channel}; "
                "RETURN QUERY "
                "INSERT INTO {schema}.{table} AS t (originator_id, originator_version, topic, state) "
                "SELECT * FROM unnest(ids, versions, topics, states) "
                "RETURNING notification_id; "
                "END; $BODY$"
            ).format(
                **names,
                lock_timeout=self.datastore.lock_timeout,
                channel=Identifier(self.channel_name),
            )
        )
        self.one_trip_statement = SQL(
            "SELECT * FROM {schema}.{function}(%b::{id_type}[], %b::bigint[], %b::text[], "
            "%b::bytea[])"
        ).format(**names)
        self.ids_as_text = self.datastore.originator_id_type == "text"
        self.select_originators_statement = SQL(
            "SELECT notification_id, originator_id, originator_version FROM {schema}.{table} "
            "WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
        ).format(**names)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if not stored_events:
            return []
        # One array per column, in binary (%b): psycopg writes them without quoting each
        # element (an array of the library's composite type went through its pure-Python
        # composite dumper, a quarter of a save's CPU; a text-format array quotes each
        # element through a regular expression).
        columns = (
            [str(e.originator_id) if self.ids_as_text else e.originator_id for e in stored_events],
            [e.originator_version for e in stored_events],
            [e.topic for e in stored_events],
            [e.state for e in stored_events],
        )
        with (
            self.datastore.get_connection() as connection,
            connection.cursor(row_factory=tuple_row) as cursor,
        ):
            cursor.execute(self.one_trip_statement, columns, prepare=True)
            return [row[0] for row in cursor.fetchall()]

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_originators(self, start: int, limit: int) -> list[tuple[int, Any, int]]:
        """(notification id, originator id, originator version) of the events past `start`,
        in order: what a serving process's follower needs to drop stale cached copies. The
        library's `select_notifications` returns every column, the event's state included,
        as a dict per row: the follower read each of its own process's commits back that
        way, 7% of a serving process's GIL time at concurrency 32."""
        with (
            self.datastore.get_connection() as connection,
            connection.cursor(row_factory=tuple_row) as cursor,
        ):
            cursor.execute(self.select_originators_statement, (start, limit), prepare=True)
            return cursor.fetchall()

    def warm(self) -> int:
        """Call the function once with an empty batch on every pooled connection, before
        the process reports ready: each connection's first call prepares the statement and
        has its backend compile the PL/pgSQL function, which was half of a first request's
        overhead (its first commits took 3 ms each, 1 ms warm). Nothing is recorded (the
        function takes the lock, notifies and inserts no row). Returns the connections
        warmed."""
        pool = getattr(self.datastore, "pool", None)
        size = int(getattr(pool, "min_size", 1) or 1)
        empty: tuple[list[Any], ...] = ([], [], [], [])
        with ExitStack() as stack:
            connections = [
                stack.enter_context(self.datastore.get_connection()) for _ in range(size)
            ]
            for connection in connections:
                with connection.cursor(row_factory=tuple_row) as cursor:
                    cursor.execute(self.one_trip_statement, empty, prepare=True)
                    cursor.fetchall()
        return size
