"""The outbox relay: every stored event, in log order, onto one Kafka topic.

The event store is the outbox. The relay reads it with the recorder's
`select_notifications` (SQLite and PostgreSQL alike) after its own stored position,
publishes one message per event and, only once the broker has acknowledged the whole
batch (acks=all, idempotent producer), stores the batch's last position in `lg_relay`.
A crash anywhere (kill -9 included) therefore resumes from the last acknowledged position:
what followed may be published again (at most one batch, `LEDGERGATE_KAFKA_RELAY_BATCH_EVENTS`),
nothing is ever skipped. Consumers make the duplicates harmless by position.

A message: key = the aggregate id (UTF-8), value = the exported record
(`domain.audit_log.export_record`, orjson: position, aggregate_id, version, topic, state
base64, leaf_hash), headers `ledgergate-position`, `ledgergate-previous-position` (the
position of the event before it in the log, 0 for the first), `ledgergate-topic` (the
event's class topic) and `ledgergate-leaf-hash` (hex), all ASCII.

Ordering. Everything goes to partition 0 of the topic (created with one partition if
missing): Kafka orders a partition, so the topic's order is the log's order, overall and
therefore per key, and the idempotent producer keeps it across retries (at most 5
requests in flight). The previous-position header chains the messages, so a consumer can
prove it missed nothing (PostgreSQL positions may have gaps; the chain says which are
real). A topic with more partitions still works: the relay writes only partition 0.
Why the log order is stable to read: eventsourcing's PostgreSQL recorder inserts under an
exclusive table lock and SQLite has one writer, so no lower position commits after a
higher one became visible.

One relay is active per topic and database (a PostgreSQL advisory lock held by a
dedicated session, or an flock next to the SQLite files); others — `serve --workers N`
with the in-serve relay, a second `relay run` — stand by and take over when it dies.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson

from domain.audit_log import StoredRecord, export_record
from gateway.kafka_settings import KafkaSettings
from projections.db import ReadStore

log = logging.getLogger("ledgergate.relay")

HEADER_POSITION = "ledgergate-position"
HEADER_PREVIOUS = "ledgergate-previous-position"
HEADER_TOPIC = "ledgergate-topic"
HEADER_LEAF_HASH = "ledgergate-leaf-hash"
TOPIC_PARTITION = 0  # the one partition that carries the log's total order

ACK_WAIT_S_MAX = 30.0  # a batch not acknowledged by then is retried from the stored position
PRODUCER_REQUEST_TIMEOUT_MS = 10_000
PRODUCER_DELIVERY_TIMEOUT_MS = 30_000
PRODUCER_METADATA_WAIT_MS_MAX = 10_000
PRODUCER_LINGER_MS = 5
PRODUCER_BATCH_BYTES = 256 * 1024
PRODUCER_IN_FLIGHT_REQUESTS_MAX = 5  # idempotence keeps the order with at most 5 in flight
POLL_INTERVAL_S = 0.1  # how often an idle relay looks for new events
RETRY_BACKOFF_S_MIN = 0.5
RETRY_BACKOFF_S_MAX = 10.0
STANDBY_RETRY_S = 1.0  # how often a standing-by relay tries to take the lock
ONCE_FAILURES_MAX = 5  # `relay run --once` gives up after this many failed batches in a row
PROGRESS_INTERVAL_S = 5.0
ADVISORY_LOCK_CLASS = 7_334_223  # pg_try_advisory_lock(class, hashtext(schema:relay))


def relay_name(topic: str) -> str:
    return f"kafka:{topic}"


def relay_position(store: ReadStore, name: str) -> int:
    """The last position the broker acknowledged for this relay (0 before the first)."""
    with store.transaction(write=False) as tx:
        row = tx.execute("SELECT position FROM lg_relay WHERE relay = %s", (name,)).fetchone()
    return int(row["position"]) if row else 0


def store_relay_position(store: ReadStore, name: str, position: int) -> None:
    """Move the stored position forward (never back: a late writer cannot rewind it)."""
    with store.transaction() as tx:
        tx.execute(
            "INSERT INTO lg_relay (relay, position, updated_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (relay) DO UPDATE SET position = excluded.position, "
            "updated_at = excluded.updated_at WHERE lg_relay.position < excluded.position",
            (name, position, datetime.now(UTC)),
        )


@dataclass(frozen=True)
class RelayMessage:
    position: int
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def message_for(notification: Any, previous_position: int) -> RelayMessage:
    """One stored event (a recorder notification) as the Kafka message the relay sends."""
    originator_id = notification.originator_id
    record = StoredRecord(
        position=int(notification.id),
        originator_id=originator_id
        if isinstance(originator_id, UUID)
        else UUID(str(originator_id)),
        originator_version=int(notification.originator_version),
        topic=notification.topic,
        state=bytes(notification.state),
    )
    exported = export_record(record)
    return RelayMessage(
        position=record.position,
        key=exported["aggregate_id"].encode(),
        value=orjson.dumps(exported),
        headers=[
            (HEADER_POSITION, str(record.position).encode()),
            (HEADER_PREVIOUS, str(previous_position).encode()),
            (HEADER_TOPIC, record.topic.encode()),
            (HEADER_LEAF_HASH, exported["leaf_hash"].encode()),
        ],
    )


# --- one active relay per topic and database ----------------------------------------------


class RelayLock:
    """Held by the one active relay; released when its process dies (session or file)."""

    def acquire(self) -> bool:
        raise NotImplementedError

    def held(self) -> bool:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    @staticmethod
    def for_store(store: ReadStore, name: str) -> RelayLock:
        if store.dialect == "postgres":
            return _AdvisoryLock(store, name)
        return _FileLock(store.path.with_name(f"relay-{_slug(name)}.lock"))


class _AdvisoryLock(RelayLock):
    def __init__(self, store: ReadStore, name: str) -> None:
        self.store = store
        self.name = name
        self._connection: Any = None

    def acquire(self) -> bool:
        if self._connection is not None:
            return True
        connection = self.store.dedicated_connection()
        try:
            row = connection.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(current_schema() || ':' || %s)) AS ok",
                (ADVISORY_LOCK_CLASS, self.name),
            ).fetchone()
        except Exception:
            connection.close()
            raise
        if row and row["ok"]:
            self._connection = connection
            return True
        connection.close()
        return False

    def held(self) -> bool:
        if self._connection is None:
            return False
        try:
            self._connection.execute("SELECT 1")
        except Exception:  # the session is gone, and the lock with it
            self.release()
            return False
        return True

    def release(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()  # ends the session: the lock goes with it
            finally:
                self._connection = None


class _FileLock(RelayLock):
    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: Any = None

    def acquire(self) -> bool:
        if self._handle is not None:
            return True
        handle = open(self.path, "a+b")  # noqa: SIM115 - held for the relay's lifetime
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._handle = handle
        return True

    def held(self) -> bool:
        return self._handle is not None

    def release(self) -> None:
        if self._handle is not None:
            try:
                fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            finally:
                self._handle.close()
                self._handle = None


def _slug(text: str) -> str:
    readable = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)[:60]
    return f"{readable}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


# --- Kafka clients ------------------------------------------------------------------------


def create_producer(kafka: KafkaSettings) -> Any:
    from kafka import KafkaProducer

    return KafkaProducer(
        **kafka.connection_kwargs(),
        acks="all",
        enable_idempotence=True,
        max_in_flight_requests_per_connection=PRODUCER_IN_FLIGHT_REQUESTS_MAX,
        linger_ms=PRODUCER_LINGER_MS,
        batch_size=PRODUCER_BATCH_BYTES,
        request_timeout_ms=PRODUCER_REQUEST_TIMEOUT_MS,
        delivery_timeout_ms=PRODUCER_DELIVERY_TIMEOUT_MS,
        max_block_ms=PRODUCER_METADATA_WAIT_MS_MAX,
    )


def ensure_topic(kafka: KafkaSettings) -> None:
    """Create the topic with one partition if it does not exist. A cluster that refuses
    (no CREATE permission, topics managed elsewhere) is logged, not fatal: the producer
    then finds out whether the topic exists."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(
        **kafka.connection_kwargs(), request_timeout_ms=PRODUCER_REQUEST_TIMEOUT_MS
    )
    try:
        admin.create_topics([NewTopic(kafka.topic, 1, kafka.replication_factor)])
        log.info(
            "created Kafka topic %s (1 partition, replication %d)",
            kafka.topic,
            kafka.replication_factor,
        )
    except TopicAlreadyExistsError:
        pass
    except Exception as error:
        log.warning(
            "could not create Kafka topic %s (%s); using it as it is",
            kafka.topic,
            type(error).__name__,
        )
    finally:
        admin.close()


class RelayBatchError(RuntimeError):
    """A batch the broker did not acknowledge in order; it is retried from the stored position."""


@dataclass
class RelayStats:
    batches: int = 0
    published: int = 0  # messages acknowledged, republished ones included
    failures: int = 0
    started_at: float = 0.0


class OutboxRelay:
    def __init__(
        self,
        recorder: Any,
        store: ReadStore,
        kafka: KafkaSettings,
        *,
        producer_factory: Callable[[KafkaSettings], Any] = create_producer,
        topic_setup: Callable[[KafkaSettings], None] = ensure_topic,
    ) -> None:
        kafka.require_bootstrap()
        self.recorder = recorder
        self.store = store
        self.kafka = kafka
        self.name = relay_name(kafka.topic)
        self.batch_events = kafka.relay_batch_events
        self.producer_factory = producer_factory
        self.topic_setup = topic_setup
        self.lock = RelayLock.for_store(store, self.name)
        self.position = 0
        self.stats = RelayStats()
        self._producer: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- one batch ------------------------------------------------------------------------

    def publish_batch(self) -> int:
        """Publish the next batch after the stored position; returns how many events."""
        notifications: Sequence[Any] = self.recorder.select_notifications(
            start=self.position, limit=self.batch_events, inclusive_of_start=False
        )
        if not notifications:
            return 0
        producer = self._producer
        futures = []
        previous = self.position
        for notification in notifications:
            message = message_for(notification, previous)
            previous = message.position
            futures.append(
                producer.send(
                    self.kafka.topic,
                    key=message.key,
                    value=message.value,
                    headers=message.headers,
                    partition=TOPIC_PARTITION,
                )
            )
        producer.flush(timeout=ACK_WAIT_S_MAX)
        last_offset = -1
        for future in futures:
            if not future.is_done:
                raise RelayBatchError("the broker did not acknowledge the batch in time")
            if future.failed():
                raise future.exception
            offset = future.value.offset
            if offset <= last_offset:
                raise RelayBatchError("the broker acknowledged the batch out of order")
            last_offset = offset
        last = int(notifications[-1].id)
        if not self.lock.held():  # another relay may be active now: do not move its position
            raise RelayBatchError("the relay lock was lost during the batch")
        store_relay_position(self.store, self.name, last)  # only after every acknowledgement
        self.position = last
        self.stats.batches += 1
        self.stats.published += len(notifications)
        return len(notifications)

    # --- the loop -------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None, *, once: bool = False) -> int:
        """Publish until `stop` is set (or, with `once`, until everything recorded when it
        started is acknowledged). Returns the stored position reached."""
        stop = stop or self._stop
        target = (self.recorder.max_notification_id() or 0) if once else None
        backoff_s = RETRY_BACKOFF_S_MIN
        failures_in_a_row = 0
        standing_by = False
        self.stats.started_at = time.monotonic()
        progress_at, progress_count = time.monotonic(), 0
        try:
            while not stop.is_set():
                if not self.lock.acquire():
                    if not standing_by:
                        log.info("another relay publishes %s; standing by", self.kafka.topic)
                        standing_by = True
                    if target is not None:
                        # `once` beside an active relay: done when it has published the target.
                        self.position = relay_position(self.store, self.name)
                        if self.position >= target:
                            break
                    stop.wait(STANDBY_RETRY_S)
                    continue
                try:
                    if self._producer is None:
                        self._connect()
                        standing_by = False
                    published = self.publish_batch()
                    failures_in_a_row, backoff_s = 0, RETRY_BACKOFF_S_MIN
                except Exception as error:
                    self.stats.failures += 1
                    failures_in_a_row += 1
                    log.error(
                        "relay batch failed (%s: %s); resuming from position %d in %.1f s",
                        type(error).__name__,
                        redacted(error, self.kafka),
                        self.position,
                        backoff_s,
                    )
                    self._disconnect()
                    if once and failures_in_a_row >= ONCE_FAILURES_MAX:
                        raise
                    stop.wait(backoff_s)
                    backoff_s = min(backoff_s * 2, RETRY_BACKOFF_S_MAX)
                    continue
                progress_count += published
                if time.monotonic() - progress_at >= PROGRESS_INTERVAL_S:
                    elapsed = time.monotonic() - progress_at
                    log.info(
                        "relayed to position %d (%d events, %.0f/s)",
                        self.position,
                        progress_count,
                        progress_count / elapsed,
                    )
                    progress_at, progress_count = time.monotonic(), 0
                if target is not None and self.position >= target:
                    break
                if published == 0:
                    if target is not None:
                        break  # nothing more up to the target (gaps end the log early)
                    stop.wait(POLL_INTERVAL_S)
        finally:
            self._disconnect()
            self.lock.release()
        return self.position

    def _connect(self) -> None:
        """Take up where the last acknowledged batch ended: the stored position, read under
        the lock, is the only truth (a standby may have moved it while we were away)."""
        self.position = relay_position(self.store, self.name)
        self.topic_setup(self.kafka)
        self._producer = self.producer_factory(self.kafka)
        partitions = self._producer.partitions_for(self.kafka.topic) or set()
        if len(partitions) > 1:
            log.info(
                "topic %s has %d partitions; the relay writes partition %d only, to keep the log's order",
                self.kafka.topic,
                len(partitions),
                TOPIC_PARTITION,
            )
        log.info("relay publishing from position %d (%s)", self.position, self.kafka.describe())

    def _disconnect(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            try:
                producer.close(timeout=5)
            except Exception as error:  # closing a broken producer: nothing left to save
                log.warning("closing the Kafka producer failed (%s)", type(error).__name__)

    # --- in the background (inside `serve`) -----------------------------------------------

    def start(self) -> OutboxRelay:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run_logged, name="ledgergate-relay", daemon=True
            )
            self._thread.start()
        return self

    def _run_logged(self) -> None:
        try:
            self.run(self._stop)
        except Exception:
            log.exception("the Kafka relay stopped")

    def stop(self, timeout_s: float = ACK_WAIT_S_MAX + 5) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None


def redacted(error: BaseException, kafka: KafkaSettings) -> str:
    """An error's first line, bounded (broker errors quote whole requests), with the
    configured secrets masked should a client library ever quote one."""
    text = str(error).splitlines()[0][:300] if str(error) else ""
    for secret in (kafka.sasl_password, kafka.ssl_key_password):
        if secret:
            text = text.replace(secret, "***")
    return text
