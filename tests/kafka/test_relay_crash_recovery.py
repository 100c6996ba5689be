"""kill -9 of `ledgergate relay run` mid-batch on a PostgreSQL store with many events, and
kill -9 of the Kafka-fed projection worker mid-way: both resume, nothing is skipped, the
only duplicates are the relay's at-least-once window, and the audit (and balances) view
built from the topic equals the one built from the database."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from domain.application import open_application
from gateway.relay import relay_name, relay_position
from projections.db import ReadStore
from projections.runner import ProjectionRunner, default_views
from tests.kafka.topic import read_topic, view_tables
from tests.kafka.workload import write_lifecycles
from tests.support.postgres import create_schema

ROOT = Path(__file__).resolve().parents[2]
LIFECYCLES = 1_500  # about 8,400 events, 17 relay batches
BATCH_EVENTS = 500
VIEWS = ("audit", "balances")
WAIT_S_MAX = 60.0
# How many times the relay is started and killed the moment the broker holds a message beyond
# the position it has stored (a batch in flight). A kill can still miss (the position stored
# between the two reads and the kill): then it is tried again with a fresh relay. Killing
# after a fraction of the measured batch period instead missed every time once on a loaded
# machine ("no kill landed while a batch was in flight").
KILL_ATTEMPTS = 4


def _start(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", *args],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log.open("ab"),
    )


def _wait(condition: Any, what: str, processes: list[subprocess.Popen[bytes]], log: Path) -> float:
    """Poll until `condition()`; returns the monotonic time it was seen. A timeout or a dead
    process fails with the processes' log tail, so a failure says what they were doing."""
    deadline = time.monotonic() + WAIT_S_MAX
    while not condition():
        for process in processes:
            if process.poll() is not None:
                pytest.fail(f"{what}: a process exited with {process.returncode}\n{_tail(log)}")
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out waiting: {what}\n{_tail(log)}")
        time.sleep(0.002)
    return time.monotonic()


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no process log)"


def _tracked(store: ReadStore, view: str) -> int:
    try:
        with store.transaction(write=False) as tx:
            row = tx.execute("SELECT position FROM lg_tracking WHERE view = %s", (view,)).fetchone()
    except psycopg.errors.UndefinedTable:  # the worker has not migrated yet
        return 0
    return int(row["position"]) if row else 0


@pytest.mark.postgres
@pytest.mark.slow
def test_kill_9_of_relay_and_worker_mid_batch_skips_nothing_and_the_views_agree(
    postgres_database: str, kafka_env: dict[str, str], tmp_path: Path
) -> None:
    suffix = secrets.token_hex(4)
    source_url = create_schema(postgres_database, f"relay_src_{suffix}")
    downstream_url = create_schema(postgres_database, f"relay_dst_{suffix}")
    target = write_lifecycles(source_url, str(tmp_path / "data"), LIFECYCLES)
    topic, bootstrap = kafka_env["LEDGERGATE_KAFKA_TOPIC"], kafka_env["LEDGERGATE_KAFKA_BOOTSTRAP"]
    relay_env = {
        **kafka_env,
        "LEDGERGATE_DATABASE_URL": source_url,
        "LEDGERGATE_KAFKA_RELAY_BATCH_EVENTS": str(BATCH_EVENTS),
    }
    worker_env = {**kafka_env, "LEDGERGATE_DATABASE_URL": downstream_url}
    log = tmp_path / "processes.log"
    source, downstream = ReadStore(source_url), ReadStore(downstream_url)
    source.migrate()
    name = relay_name(topic)
    app = open_application(source_url)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        # 1. kill -9 of the relay mid-batch: as soon as the broker holds a message beyond the
        #    position the relay has stored, i.e. while the batch is sent and not yet
        #    acknowledged. The topic is read right after each kill, so we know exactly which
        #    messages beyond the stored position made it (the at-least-once window); a kill
        #    that missed (nothing beyond) is tried again with a fresh relay.
        ids = [n.id for n in app.recorder.select_notifications(start=1, limit=10 * target)]
        rank = {position: index + 1 for index, position in enumerate(ids)}  # 0 before any
        ends = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        partition = TopicPartition(topic, 0)

        def end_offset() -> int:
            if not ends.partitions_for_topic(topic):  # the relay has not created it yet
                return 0
            try:
                return int(ends.end_offsets([partition], timeout_ms=2000)[partition])
            except KafkaError:  # not answered in time: looked at again on the next poll
                return 0

        kills: list[tuple[int, set[int]]] = []  # (stored position, published beyond it)
        on_topic = 0  # messages on the topic when this relay started
        try:
            for _attempt in range(KILL_ATTEMPTS):
                resumed_from = relay_position(source, name)
                relay = _start(relay_env, log, "relay", "run")
                processes.append(relay)

                def in_flight(
                    base: int = rank.get(resumed_from, 0), before: int = on_topic
                ) -> bool:
                    published = end_offset() - before  # this relay's, from resumed_from on
                    stored = relay_position(source, name)  # read after: never ahead of it
                    return base + published > rank.get(stored, 0)

                # Past the first batch: a kill then leaves a stored position to resume from.
                _wait(lambda: relay_position(source, name) > 0, "a first batch", [relay], log)
                _wait(in_flight, "a batch in flight", [relay], log)
                os.kill(relay.pid, signal.SIGKILL)
                relay.wait(10)
                stored_at_kill = relay_position(source, name)
                assert 0 < stored_at_kill < target, f"the workload ran out ({target})"
                messages = read_topic(bootstrap, topic)
                on_topic = len(messages)
                beyond = {int(dict(m.headers)["ledgergate-position"]) for m in messages} - set(
                    range(stored_at_kill + 1)
                )
                kills.append((stored_at_kill, beyond))
                if beyond:
                    break
        finally:
            ends.close()
        assert kills[-1][1], "no kill landed while a batch was in flight"

        # 2. A new relay resumes; the Kafka-fed worker starts beside it and is killed mid-way.
        relay = _start(relay_env, log, "relay", "run")
        worker = _start(
            worker_env,
            log,
            "projections",
            "run",
            "--source",
            "kafka",
            *[arg for view in VIEWS for arg in ("--view", view)],
        )
        processes += [relay, worker]
        applies = "the worker applies"
        _wait(lambda: _tracked(downstream, "audit") > 0, applies, [relay, worker], log)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        applied_at_kill = _tracked(downstream, "audit")
        catches_up = "the relay catches up"
        _wait(lambda: relay_position(source, name) >= target, catches_up, [relay], log)
        relay.send_signal(signal.SIGTERM)  # a clean stop after the batch in hand
        assert relay.wait(30) == 0
        summary = json.loads(relay.stdout.read() if relay.stdout else b"{}")
        assert summary["position"] == target and summary["failures"] == 0
        assert 0 < applied_at_kill < target, "the worker was not killed mid-way"

        # 3. The worker, restarted, applies the rest (and skips what it already had).
        finished = subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "projections",
                "run",
                "--source",
                "kafka",
                "--once",
                *[arg for view in VIEWS for arg in ("--view", view)],
            ],
            env={**os.environ, **worker_env, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            capture_output=True,
            timeout=WAIT_S_MAX,
        )
        assert finished.returncode == 0, finished.stderr.decode()[-2000:]
        assert json.loads(finished.stdout)["position"] == target
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)

    # Nothing skipped: every stored position is on the topic. The order is the log's order,
    # restarted once, from just after the position stored when the relay was killed; the
    # only duplicates are the batch that was in flight (the at-least-once window).
    stored = app.recorder.select_notifications(start=1, limit=10 * target)
    ids = [n.id for n in stored]
    assert ids[-1] == target
    positions = [int(dict(m.headers)["ledgergate-position"]) for m in read_topic(bootstrap, topic)]
    assert sorted(set(positions)) == ids
    # Each kill restarts the order once, just after the position it left stored.
    restarts = [positions[i] for i in range(1, len(positions)) if positions[i] <= positions[i - 1]]
    assert restarts == [ids[ids.index(stored) + 1] for stored, beyond in kills if beyond]
    # Exactly the messages beyond the stored position at a kill are duplicated, once per kill.
    counts = Counter(positions)
    for position in ids:
        windows = sum(position in beyond for _, beyond in kills)
        assert counts[position] == 1 + windows, position
    assert all(len(beyond) <= BATCH_EVENTS for _, beyond in kills)

    # The Kafka-fed views equal the views built from the database.
    runner = ProjectionRunner(app, source, [v for v in default_views() if v.name in VIEWS])
    assert runner.catch_up() == target
    from_database, from_kafka = view_tables(source, VIEWS), view_tables(downstream, VIEWS)
    assert len(from_database["lg_audit"]) == LIFECYCLES
    assert from_kafka == from_database
    app.close()
    source.close()
    downstream.close()
