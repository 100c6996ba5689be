"""Reading a relay topic back from the real broker, and comparing read models."""

from __future__ import annotations

import time
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from projections.db import ReadStore
from projections.runner import default_views

READ_WAIT_S_MAX = 30.0


def read_topic(bootstrap: str, topic: str) -> list[Any]:
    """Every message on the topic, in partition-0 order (no consumer group: no join wait).
    Fails if any other partition holds a message: the relay writes partition 0 only."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        assert partitions, f"topic {topic} does not exist"
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        ends = consumer.end_offsets(assigned)
        assert all(ends[tp] == 0 for tp in assigned if tp.partition != 0), ends
        first = TopicPartition(topic, 0)
        records: list[Any] = []
        deadline = time.monotonic() + READ_WAIT_S_MAX
        while consumer.position(first) < ends[first]:
            assert time.monotonic() < deadline, "the topic could not be read to its end in time"
            for messages in consumer.poll(timeout_ms=200, max_records=5000).values():
                records.extend(messages)
        return records
    finally:
        consumer.close()


def view_tables(store: ReadStore, names: tuple[str, ...] | None = None) -> dict[str, list[str]]:
    """Every row of every view's tables (of the named views), as sorted text."""
    content: dict[str, list[str]] = {}
    with store.transaction(write=False) as tx:
        for view in default_views():
            if names is not None and view.name not in names:
                continue
            for table in view.tables:
                rows = tx.execute(f"SELECT * FROM {table}").fetchall()  # noqa: S608
                content[table] = sorted(repr(sorted(row.items())) for row in rows)
        tracking = tx.execute("SELECT view, position FROM lg_tracking").fetchall()
    content["lg_tracking"] = sorted(
        repr((row["view"], int(row["position"])))
        for row in tracking
        if names is None or row["view"] in names
    )
    return content
