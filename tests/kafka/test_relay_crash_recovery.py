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
# When the relay is killed, as a fraction of its measured batch period after an acknowledged
# batch: inside the next batch on any machine, so each attempt uses at most three batches and
# four attempts (12) never run out of the workload's 17. Fixed delays did on a faster machine:
# the relay published everything before the last attempt and "the next batch" never came.
KILL_FRACTIONS = (0.3, 0.5, 0.7, 0.9)


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
        # 1. kill -9 of the relay mid-batch: a few ms after an acknowledged batch moved the
        #    stored position, while it sends the next one. The topic is read right after each
        #    kill, so we know exactly which messages beyond the stored position made it (the
        #    at-least-once window); a kill that landed before any of them is tried again later
        #    in the batch, at most len(KILL_DELAYS_S) times.
        kills: list[tuple[int, set[int]]] = []  # (stored position, published beyond it)
        for fraction in KILL_FRACTIONS:
            relay = _start(relay_env, log, "relay", "run")
            processes.append(relay)
            start = relay_position(source, name)
            first = _wait(
                lambda: relay_position(source, name) > start,  # noqa: B023
                "a first batch",
                [relay],
                log,
            )
            seen = relay_position(source, name)
            assert seen < target, f"the workload ran out before a kill (position {seen})"
            acked = _wait(
                lambda: relay_position(source, name) != seen,  # noqa: B023
                "the next batch",
                [relay],
                log,
            )
            time.sleep(fraction * (acked - first))
            os.kill(relay.pid, signal.SIGKILL)
            relay.wait(10)
            stored_at_kill = relay_position(source, name)
            assert 0 < stored_at_kill < target, f"the workload ran out before a kill ({target})"
            beyond = {
                int(dict(m.headers)["ledgergate-position"]) for m in read_topic(bootstrap, topic)
            } - set(range(stored_at_kill + 1))
            kills.append((stored_at_kill, beyond))
            if beyond:
                break
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
