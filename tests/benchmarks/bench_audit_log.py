"""The tamper-evident log's costs, in one run:

1. durable events/s through the group-commit writer with the Merkle follower hashing and
   signing checkpoints behind it (on) against without it (off), alternating runs, on SQLite
   and PostgreSQL; plus how far behind the follower was when the writers finished;
2. inclusion-proof generation latency (p50/p99) from the stored tree, on a tree of
   --proof-leaves leaves (synthetic leaf hashes written straight into the tree tables);
3. `verify` throughput in events/s on a synthetic export of --verify-events records
   (streamed to disk and back: memory stays bounded; peak RSS printed).

    .venv/bin/python -m tests.benchmarks.bench_audit_log [--runs 3] [--callers 32] [--requests 15]
        [--proof-leaves 1000000] [--verify-events 1000000]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain.application import open_application
from domain.audit_log import StoredRecord, export_record, leaf_bytes, leaf_hash
from domain.merkle import (
    Frontier,
    consistency_proof_plan,
    plan_keys,
    proof_from_plan,
    verify_inclusion,
)
from domain.writer import GroupCommitWriter
from projections.audit_tree import MerkleLog
from projections.audit_verify import CHECKPOINTS_FILE, EVENTS_FILE
from projections.db import ReadStore
from projections.signed_note import Checkpoint, Signer
from tests.support.builders import priced_project, run_callers, served_request
from tests.support.postgres import create_schema, temporary_database

ORIGIN = "bench.ledgergate/audit-log"


# --- 1. the write path, follower on and off ----------------------------------------------


def write_run(
    database_url: str | None, data_dir: str, callers: int, requests: int, follower: bool
) -> tuple[float, int, float]:
    """(durable events/s, events, seconds the follower needed after the writers finished)."""
    app = open_application(database_url, data_dir)
    store = ReadStore(database_url, data_dir)
    store.migrate()
    merkle = MerkleLog(
        app,
        store,
        signer=Signer(ORIGIN, Ed25519PrivateKey.generate()),
        every_events=1000,
        interval_s=1.0,
    )
    writer = GroupCommitWriter(app).start()  # as in serve: the follower polls, unprompted
    project_id = priced_project(writer, reference="b")
    if follower:
        merkle.catch_up()
        merkle.start()
    start_position = app.recorder.max_notification_id() or 0

    def caller(_: int) -> None:
        for _ in range(requests):
            served_request(writer, project_id)

    elapsed = run_callers(callers, caller)
    last = app.recorder.max_notification_id() or 0
    lag_s = 0.0
    if follower:
        finished = time.perf_counter()
        deadline = finished + 120
        while merkle.last_position < last and time.perf_counter() < deadline:
            time.sleep(0.01)
        lag_s = time.perf_counter() - finished
        merkle.stop()
        if merkle.last_position < last or merkle.errors:
            raise SystemExit("the follower did not keep up or failed")
    writer.stop()
    store.close()
    app.close()
    events = last - start_position
    return events / elapsed, events, lag_s


# --- 2. proof latency ----------------------------------------------------------------------


def fill_tree(store: ReadStore, leaves: int) -> None:
    """Write `leaves` synthetic leaf hashes and every complete node into the tree tables."""
    frontier = Frontier()
    batch_leaves: list[tuple[object, ...]] = []
    batch_nodes: list[tuple[object, ...]] = []
    zero = "00000000-0000-0000-0000-000000000000"

    def flush() -> None:
        with store.transaction() as tx:
            tx.cursor.executemany(
                store.sql(
                    "INSERT INTO lg_merkle_leaves (leaf_index, position, originator_id, "
                    "originator_version, request_id, leaf_hash) VALUES (%s, %s, %s, %s, NULL, %s)"
                ),
                batch_leaves,
            )
            tx.cursor.executemany(
                store.sql(
                    "INSERT INTO lg_merkle_nodes (level, node_index, hash) VALUES (%s, %s, %s)"
                ),
                batch_nodes,
            )
            tx.execute(
                "UPDATE lg_merkle_state SET size = %s, last_position = %s WHERE log = 'events'",
                (frontier.size, frontier.size),
            )
        batch_leaves.clear()
        batch_nodes.clear()

    for index in range(leaves):
        value = hashlib.sha256(index.to_bytes(8, "big")).digest()
        completed = frontier.append(value)
        batch_leaves.append((index, index + 1, zero, 1, value))
        batch_nodes.extend((level, node_index, node) for (level, node_index), node in completed[1:])
        if len(batch_leaves) >= 20_000:
            flush()
    if batch_leaves:
        flush()


def proof_latency(
    database_url: str | None, data_dir: str, leaves: int, samples: int
) -> tuple[float, float]:
    app = open_application(database_url, data_dir)
    store = ReadStore(database_url, data_dir)
    store.migrate()
    fill_tree(store, leaves)
    merkle = MerkleLog(app, store)
    root = merkle.root(leaves)
    rng = random.Random(9)
    timings = []
    for _ in range(samples):
        index = rng.randrange(leaves)
        started = time.perf_counter()
        proof = merkle.inclusion_proof(index, leaves)
        timings.append((time.perf_counter() - started) * 1000)
        if not verify_inclusion(
            index, leaves, hashlib.sha256(index.to_bytes(8, "big")).digest(), proof, root
        ):
            raise SystemExit("a generated proof does not verify")
    store.close()
    app.close()
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.99) - 1]


# --- 3. verify throughput ------------------------------------------------------------------


def synthetic_export(directory: Path, events: int, checkpoint_every: int) -> str:
    """An export of `events` records in the real format, signed every `checkpoint_every`,
    written in one streaming pass: only the nodes the consistency proofs need are kept."""
    signer = Signer(ORIGIN, Ed25519PrivateKey.generate())
    sizes = sorted({*range(checkpoint_every, events + 1, checkpoint_every), events})
    plans = {
        (old, new): consistency_proof_plan(old, new)
        for old, new in zip(sizes, sizes[1:], strict=False)
    }
    needed = {key for plan in plans.values() for key in plan_keys(plan)}
    kept: dict[tuple[int, int], bytes] = {}
    roots: dict[int, bytes] = {}
    frontier = Frontier()
    aggregates = [UUID(int=random.Random(n).getrandbits(128)) for n in range(1000)]
    state = (
        b'{"amount":{"_data_":"1.000000000","_type_":"decimal_str"},"reference":"r",'
        b'"timestamp":{"_data_":"2026-12-01T12:00:00.000000+00:00","_type_":"datetime_iso"}}'
    )
    with open(directory / EVENTS_FILE, "w", encoding="utf-8") as handle:
        for index in range(events):
            record = StoredRecord(
                index + 1, aggregates[index % 1000], index // 1000 + 1,
                "domain.account:Account.ToppedUp", state,
            )  # fmt: skip
            leaf = leaf_bytes(record)
            line = export_record(record)
            line["leaf"] = base64.b64encode(leaf).decode()
            line["leaf_index"] = index
            handle.write(json.dumps(line, separators=(",", ":")) + "\n")
            for key, node in frontier.append(leaf_hash(leaf)):
                if key in needed:
                    kept[key] = node
            if frontier.size in sizes:
                roots[frontier.size] = frontier.root()
    with open(directory / CHECKPOINTS_FILE, "w", encoding="utf-8") as handle:
        previous: int | None = None
        for size in sizes:
            proof: list[bytes] = (
                proof_from_plan(plans[(previous, size)], kept) if previous is not None else []
            )
            note = signer.sign(Checkpoint(ORIGIN, size, roots[size]).text())
            handle.write(
                json.dumps(
                    {"size": size, "root": roots[size].hex(), "note": note,
                     "consistency": [p.hex() for p in proof]}
                ) + "\n"
            )  # fmt: skip
            previous = size
    return signer.verifier.vkey()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--requests", type=int, default=15)
    parser.add_argument("--proof-leaves", type=int, default=1_000_000)
    parser.add_argument("--proof-samples", type=int, default=2000)
    parser.add_argument("--verify-events", type=int, default=1_000_000)
    args = parser.parse_args()

    write_rows = []
    proof_rows = []
    with temporary_database("lg_bench_audit") as pg_url:
        for backend in ("sqlite", "postgres"):
            rates: dict[str, list[float]] = {"off": [], "on": []}
            lags = []
            for run in range(args.runs):
                for mode in ("off", "on"):  # alternating, so drift hits both alike
                    with tempfile.TemporaryDirectory() as tmp:
                        url = (
                            create_schema(pg_url, f"w_{mode}_{run}")
                            if backend == "postgres"
                            else None
                        )
                        rate, events, lag = write_run(
                            url, tmp, args.callers, args.requests, mode == "on"
                        )
                        rates[mode].append(rate)
                        if mode == "on":
                            lags.append(lag)
                        print(
                            f"  {backend:8} hashing {mode:3} run {run + 1}: {rate:8,.0f} events/s"
                            f" ({events} events{f', follower done {lag:.2f} s after' if mode == 'on' else ''})",
                            flush=True,
                        )
            off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
            write_rows.append((backend, off, on, on / off, statistics.median(lags)))
            with tempfile.TemporaryDirectory() as tmp:
                leaves = (
                    args.proof_leaves if backend == "sqlite" else min(args.proof_leaves, 200_000)
                )
                url = create_schema(pg_url, "proofs") if backend == "postgres" else None
                started = time.perf_counter()
                p50, p99 = proof_latency(url, tmp, leaves, args.proof_samples)
                print(
                    f"  {backend:8} proofs on {leaves:,} leaves (tree built in "
                    f"{time.perf_counter() - started:.0f} s): p50 {p50:.2f} ms p99 {p99:.2f} ms",
                    flush=True,
                )
                proof_rows.append((backend, leaves, p50, p99))

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        started = time.perf_counter()
        vkey = synthetic_export(directory, args.verify_events, max(1, args.verify_events // 10))
        built = time.perf_counter() - started
        size_mb = (directory / EVENTS_FILE).stat().st_size / 1e6
        print(
            f"  synthetic export: {args.verify_events:,} events, {size_mb:,.0f} MB in {built:.0f} s",
            flush=True,
        )
        # The real command, in its own process, so its peak memory is its own.
        started = time.perf_counter()
        completed = subprocess.run(
            [str(Path(sys.executable).with_name("ledgergate")), "verify", str(directory),
             "--public-key", vkey],
            capture_output=True, text=True, timeout=3600,
        )  # fmt: skip
        wall_s = time.perf_counter() - started
        report = json.loads(completed.stdout.strip().splitlines()[-1])
        elapsed = float(report["elapsed_s"])  # the verification itself, without start-up
        if completed.returncode != 0 or report["verified_size"] != args.verify_events:
            raise SystemExit(f"verify failed on the synthetic export: {completed.stdout}")
        peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    print()
    print(
        f"write path: {args.callers} callers x {args.requests} lifecycles (6 events each), "
        f"checkpoint every 1000 events or 1 s, median of {args.runs}"
    )
    print(
        f"{'backend':10}{'hashing off ev/s':>18}{'hashing on ev/s':>17}{'on/off':>8}{'follower lag s':>16}"
    )
    for backend, off, on, ratio, lag in write_rows:
        print(f"{backend:10}{off:18,.0f}{on:17,.0f}{ratio:8.2f}{lag:16.2f}")
    print()
    print(f"inclusion proof generation ({args.proof_samples} random leaves)")
    print(f"{'backend':10}{'leaves':>12}{'p50 ms':>10}{'p99 ms':>10}")
    for backend, leaves, p50, p99 in proof_rows:
        print(f"{backend:10}{leaves:12,}{p50:10.2f}{p99:10.2f}")
    print()
    print("verify (export on disk, every leaf recomputed, 10 signed checkpoints + consistency)")
    print(
        f"{'events':>12}{'seconds':>10}{'events/s':>12}{'peak RSS MB':>14}{'wall s (with start-up)':>24}"
    )
    print(
        f"{args.verify_events:12,}{elapsed:10.1f}{args.verify_events / elapsed:12,.0f}"
        f"{peak_rss_mb:14,.0f}{wall_s:24.1f}"
    )


if __name__ == "__main__":
    main()
