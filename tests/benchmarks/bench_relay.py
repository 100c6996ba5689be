"""Outbox relay throughput on the real PostgreSQL with the real (tansu) broker, and the
Kafka-fed audit view's apply rate, in one run.

    .venv/bin/python -m tests.benchmarks.bench_relay [--lifecycles 3000] [--batch 100,500,2000]

Workload: LIFECYCLES request lifecycles (about 5.6 events each: completed, streamed,
failed and rejected requests) written through the group-commit writer into a fresh
schema. For each relay batch size, a fresh topic: `OutboxRelay.run(once=True)` publishes the
whole log (acks=all, idempotent, position stored after each acknowledged batch). Then the
audit view is built from the last topic by `KafkaFeed.run(once=True)` (group join included),
and, for comparison, from the database by the log runner.
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import time

from domain.application import open_application
from gateway.kafka_feed import KafkaFeed
from gateway.kafka_settings import KafkaSettings
from gateway.relay import OutboxRelay
from projections.audit import AuditView
from projections.db import ReadStore
from tests.kafka.workload import write_lifecycles
from tests.support.kafka_broker import tansu_broker
from tests.support.postgres import create_schema, temporary_database


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lifecycles", type=int, default=3000)
    parser.add_argument("--batch", default="100,500,2000", help="relay batch sizes to compare")
    args = parser.parse_args()
    batches = [int(b) for b in args.batch.split(",")]
    rows: list[tuple[str, int, float]] = []
    with temporary_database("lg_bench") as pg_url, tansu_broker() as bootstrap:
        source_url = create_schema(pg_url, "relay_source")
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            events = write_lifecycles(source_url, tmp, args.lifecycles)
            print(f"  wrote {events:,} events in {time.perf_counter() - started:.1f} s", flush=True)
        app = open_application(source_url)
        store = ReadStore(source_url)
        store.migrate()
        topic = ""
        for batch in batches:
            topic = f"bench.{batch}.{secrets.token_hex(3)}"
            kafka = KafkaSettings.from_env(
                {
                    "LEDGERGATE_KAFKA_BOOTSTRAP": bootstrap,
                    "LEDGERGATE_KAFKA_TOPIC": topic,
                    "LEDGERGATE_KAFKA_RELAY_BATCH_EVENTS": str(batch),
                }
            )
            relay = OutboxRelay(app.recorder, store, kafka)
            started = time.perf_counter()
            position = relay.run(once=True)
            elapsed = time.perf_counter() - started
            if position != events or relay.stats.failures:
                raise SystemExit(f"relay ended at {position} of {events} events")
            rows.append((f"relay, batch {batch}", events, events / elapsed))
            print(f"  relay batch {batch:5}: {events / elapsed:9,.0f} events/s", flush=True)
        downstream = ReadStore(create_schema(pg_url, "relay_downstream"))
        downstream.migrate()
        kafka = KafkaSettings.from_env(
            {"LEDGERGATE_KAFKA_BOOTSTRAP": bootstrap, "LEDGERGATE_KAFKA_TOPIC": topic}
        )
        started = time.perf_counter()
        position = KafkaFeed(downstream, [AuditView()], kafka).run(once=True)
        elapsed = time.perf_counter() - started
        if position != events:
            raise SystemExit(f"the Kafka-fed view ended at {position} of {events}")
        rows.append(("Kafka-fed audit view (incl. group join)", events, events / elapsed))
        # For comparison: the same view built from the database by the log runner.
        from projections.runner import ProjectionRunner

        reference = ReadStore(create_schema(pg_url, "relay_reference"))
        reference.migrate()
        started = time.perf_counter()
        ProjectionRunner(app, reference, [AuditView()]).catch_up()
        rows.append(
            ("audit view from the database", events, events / (time.perf_counter() - started))
        )
        reference.close()
        downstream.close()
        store.close()
        app.close()
    print()
    print(f"{'stage':44}{'events':>10}{'events/s':>12}")
    for stage, count, rate in rows:
        print(f"{stage:44}{count:10,}{rate:12,.0f}")


if __name__ == "__main__":
    main()
