"""Projections fed from the Kafka topic (`ledgergate projections run --source kafka`): the
downstream side of the outbox relay, with an exactly-once effect by position.

Each message is checked before use: its leaf hash is recomputed from the record
(`domain.audit_log`) and must equal both the value's and the header's, and its
previous-position header must chain onto the position the view has reached — a gap means
a message is missing (topic retention, a consumer pointed at another database's topic), and
the feed stops naming the positions instead of building a view with a hole. Then the
events go through the same apply-by-position path as the log runner
(`projections.runner.apply_by_position`): rows and tracking position in one transaction,
duplicates (the relay's at-least-once window) and replays are no-ops. The consumer
group's offset is committed only after the views' transactions, so a crash re-reads a
little and changes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import StoredEvent

from domain.application import LedgerApplication
from domain.audit_log import LeafFormatError, record_from_export, record_leaf_hash
from gateway.kafka_settings import (
    CONSUMER_HEARTBEAT_INTERVAL_MS,
    CONSUMER_SESSION_TIMEOUT_MS,
    KafkaSettings,
)
from gateway.relay import HEADER_LEAF_HASH, HEADER_POSITION, HEADER_PREVIOUS
from projections.base import View
from projections.db import ReadStore, Tx
from projections.runner import (
    Undecodable,
    apply_by_position,
    ensure_tracking,
    is_transient,
    locked_view_position,
    record_dead_letter,
)

log = logging.getLogger("ledgergate.kafka_feed")

POLL_TIMEOUT_MS = 500
RECORDS_PER_POLL_MAX = 1000
ASSIGNMENT_WAIT_S_MAX = 60.0  # `--once`: how long to wait to be given the partition
PROGRESS_INTERVAL_S = 5.0


class FeedError(RuntimeError):
    """A message the feed refuses to apply (integrity or a gap); names the position."""


def create_consumer(kafka: KafkaSettings) -> Any:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        **kafka.connection_kwargs(),
        group_id=kafka.group_id,
        enable_auto_commit=False,  # committed after the views' transactions
        auto_offset_reset="earliest",
        session_timeout_ms=CONSUMER_SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=CONSUMER_HEARTBEAT_INTERVAL_MS,
        max_poll_records=RECORDS_PER_POLL_MAX,
    )
    consumer.subscribe([kafka.topic])
    return consumer


def event_mapper() -> Any:
    """The event store's mapper (same transcodings, same cipher settings if any), without
    an event store: an in-memory application lends it."""
    return LedgerApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper


@dataclass(frozen=True)
class MessageInfo:
    """What the feed keeps of a message beside its event: the chain link, and what a dead
    letter records (topic, aggregate id — never the state)."""

    previous: int
    topic: str
    originator_id: UUID


def decode_message(message: Any, mapper: Any) -> tuple[int, MessageInfo, Any]:
    """(position, message info, domain event) from one relay message, verified. An event
    this version cannot decode comes back as `Undecodable`, to be dead-lettered like the
    log runner does."""
    headers = {name: value for name, value in (message.headers or [])}
    try:
        data = orjson.loads(message.value)
        record = record_from_export(data)
    except (orjson.JSONDecodeError, LeafFormatError) as error:
        raise FeedError(f"offset {message.offset}: not a relay record ({error})") from None
    computed = record_leaf_hash(record).hex()
    if data.get("leaf_hash") != computed or headers.get(HEADER_LEAF_HASH) != computed.encode():
        raise FeedError(f"position {record.position}: the leaf hash does not match the record")
    try:
        header_position = int(headers[HEADER_POSITION])
        previous = int(headers[HEADER_PREVIOUS])
    except (KeyError, ValueError):
        raise FeedError(f"position {record.position}: position headers missing") from None
    if header_position != record.position or not 0 <= previous < record.position:
        raise FeedError(f"position {record.position}: the position headers disagree")
    info = MessageInfo(previous, record.topic, record.originator_id)
    try:
        event = mapper.to_domain_event(
            StoredEvent(record.originator_id, record.originator_version, record.topic, record.state)
        )
    except Exception as error:
        event = Undecodable(record.topic, error)
    return record.position, info, event


def split_at_gap(
    decoded: Sequence[tuple[int, MessageInfo, Any]], current: int, view: str
) -> tuple[Sequence[tuple[int, MessageInfo, Any]], FeedError | None]:
    """Every new entry must follow the one before it in the log: its previous position is
    the position reached so far (duplicates and replays, at or below it, are skipped).
    Returns the entries before the first gap, and the error naming the gap if there is one."""
    last = current
    for index, (position, info, _) in enumerate(decoded):
        if position <= last:
            continue
        previous = info.previous
        if previous != last:
            return decoded[:index], FeedError(
                f"view {view}: position {position} follows {previous} in the log, but the view "
                f"is at {last}; the events in between are missing from the topic"
            )
        last = position
    return decoded, None


class KafkaFeed:
    def __init__(
        self,
        store: ReadStore,
        views: Sequence[View],
        kafka: KafkaSettings,
        *,
        consumer_factory: Callable[[KafkaSettings], Any] = create_consumer,
    ) -> None:
        kafka.require_bootstrap()
        self.store = store
        self.views = list(views)
        self.kafka = kafka
        self.consumer_factory = consumer_factory
        self.mapper = event_mapper()
        self.position = 0
        self.applied = 0  # messages applied or skipped as duplicates
        self.dead_letters = 0  # recorded by this feed since it started

    def apply(self, decoded: Sequence[tuple[int, MessageInfo, Any]]) -> int:
        """Apply one batch to every view, each in its own transaction with its position; on
        a gap, apply what precedes it, then raise. An event a view cannot apply is handled
        as the log runner handles it: the batch again, one savepoint per event, the failing
        one recorded in lg_dead_letters and passed over — so both builds stay equal."""
        reached, gaps = [], []
        for view in self.views:
            try:
                with self.store.transaction() as tx:
                    position, gap = self._apply_view(tx, view, decoded, guarded=False)
            except Exception as error:
                if is_transient(error):
                    raise
                with self.store.transaction() as tx:
                    position, gap = self._apply_view(tx, view, decoded, guarded=True)
            reached.append(position)
            if gap is not None:
                gaps.append(gap)
        self.position = min(reached, default=0)
        if gaps:  # what came before the gap is applied; nothing after it ever is
            raise gaps[0]
        self.applied += len(decoded)
        return self.position

    def _apply_view(
        self, tx: Tx, view: View, decoded: Sequence[tuple[int, MessageInfo, Any]], *, guarded: bool
    ) -> tuple[int, FeedError | None]:
        current = locked_view_position(tx, view)
        usable, gap = split_at_gap(decoded, current, view.name)
        position = apply_by_position(
            tx, view, usable, current, dead_letter=self._dead_letter, guarded=guarded
        )
        return position, gap

    def _dead_letter(
        self, tx: Tx, view: View, position: int, info: MessageInfo, error: BaseException
    ) -> None:
        self.dead_letters += 1  # met on the Kafka feed; recorded like the log follower's
        record_dead_letter(tx, view, position, info.topic, info.originator_id, error)

    def run(self, stop: threading.Event | None = None, *, once: bool = False) -> int:
        """Consume until `stop` is set (with `once`: until the end of the topic as it was
        when the partition was assigned). Returns the lowest view position reached."""
        stop = stop or threading.Event()
        ensure_tracking(self.store, self.views)
        with self.store.transaction(write=False) as tx:
            self.position = min((locked_view_position(tx, view) for view in self.views), default=0)
        consumer = self.consumer_factory(self.kafka)
        log.info("projecting from Kafka (%s, group %s)", self.kafka.describe(), self.kafka.group_id)
        end_offsets: dict[Any, int] | None = None
        started = time.monotonic()
        progress_at = started
        try:
            while not stop.is_set():
                batches = consumer.poll(
                    timeout_ms=POLL_TIMEOUT_MS, max_records=RECORDS_PER_POLL_MAX
                )
                for partition in sorted(batches, key=lambda tp: (tp.topic, tp.partition)):
                    messages = batches[partition]
                    if messages:
                        self.apply([decode_message(m, self.mapper) for m in messages])
                if batches:
                    consumer.commit()  # only after the views' transactions committed
                if time.monotonic() - progress_at >= PROGRESS_INTERVAL_S:
                    log.info("projected from Kafka to position %d", self.position)
                    progress_at = time.monotonic()
                if not once:
                    continue
                assignment = consumer.assignment()
                if assignment and end_offsets is None:
                    end_offsets = consumer.end_offsets(list(assignment))
                if end_offsets is not None and all(
                    consumer.position(tp) >= end for tp, end in end_offsets.items()
                ):
                    break
                if end_offsets is None and time.monotonic() - started > ASSIGNMENT_WAIT_S_MAX:
                    raise FeedError(f"no partition of {self.kafka.topic} was assigned in time")
        finally:
            consumer.close()
        return self.position
