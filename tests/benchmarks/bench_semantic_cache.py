"""Semantic-cache lookup time at 1k / 10k / 100k entries in one bucket.

    .venv/bin/python -m tests.benchmarks.bench_semantic_cache [--sizes 1000 10000 100000]
        [--dimensions 256 1536] [--lookups 200] [--postgres]

For each size, a bucket of that many sealed entries is written straight into the
`lg_response_cache` table (SQLite in a temporary directory; a fresh PostgreSQL schema with
--postgres), with vectors from the simulator's hashed n-gram embedding (256 dimensions, as the
simulator answers) or random unit vectors (1536, text-embedding-3-small's size). Then:

- cold: the first lookup of the bucket in a process: read every row, decrypt every vector
  (AES-256-GCM), build the matrix (once per bucket and process, or after an eviction);
- warm: a lookup once the index is in memory: the store's freshness check (COUNT/MAX over the
  bucket's index) and the exact cosine scan (numpy), p50/p99 over --lookups;
- scan: the numpy scan alone (what grows with the bucket), p50/p99.
The embedding call itself is not included (it is an embeddings request through the router; see
bench_response_cache's semantic row for the whole path through the gateway).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import numpy as np

from domain.clock import FixedClock
from gateway import response_cache as rc
from gateway import semantic_cache as sc
from gateway.simulator import hashed_ngram_embedding
from projections.db import ReadStore, iso
from tests.support.postgres import create_schema, temporary_database

WORDS = (
    "capital city country river mountain price ticket train weather forecast invoice "
    "refund order delivery account password reset language translate summary report "
    "meeting agenda budget travel hotel flight recipe dinner music guitar history war"
).split()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]


def vectors(count: int, dimensions: int, seed: int) -> np.ndarray:
    generator = np.random.default_rng(seed)
    if dimensions == 256:  # the simulator's embedding of synthetic prompts
        rows = []
        for _ in range(count):
            words = generator.choice(WORDS, size=8)
            rows.append(hashed_ngram_embedding(" ".join(words) + f" {generator.integers(1e9)}"))
        matrix = np.asarray(rows, dtype=np.float32)
    else:
        matrix = generator.standard_normal((count, dimensions)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def fill(store: ReadStore, bucket: sc.Bucket, matrix: np.ndarray, now: datetime) -> None:
    created, expires = iso(now), iso(now + timedelta(days=7))
    rows = []
    for number, vector in enumerate(matrix):
        lookup_id = f"{number:064x}"
        sealed = sc.seal_vector(bucket, lookup_id, vector, b"k" * 32)
        rows.append(
            (
                lookup_id,
                "sealed-entry",
                100,
                created,
                expires,
                "P",
                bucket.bucket_id,
                number + 1,
                sealed,
            )
        )
    with store.transaction() as tx:  # what put_sync writes, without its bound checks per row
        for row in rows:
            tx.execute(
                "INSERT INTO lg_response_cache (lookup_id, sealed, size_bytes, created_at,"
                " expires_at, project_id, bucket_id, bucket_seq, sealed_semantic)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                row,
            )
        tx.execute(
            "INSERT INTO lg_semantic_buckets (bucket_id, inserts, removals) VALUES (%s, %s, 0)",
            (bucket.bucket_id, len(rows)),
        )


def measure(size: int, dimensions: int, lookups: int, database_url: str | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as data_dir:
        store = ReadStore(database_url, data_dir)
        store.migrate()
        try:
            now = datetime(2026, 12, 1, 12, tzinfo=UTC)
            clock = FixedClock(now)
            cache = rc.ResponseCacheStore(
                store, clock, entries_max=size + 1, project_entries_max=size + 1
            )
            bucket = sc.derive_bucket(b"bench secret", f"bucket {size} {dimensions}".encode())
            started = time.perf_counter()
            fill(store, bucket, vectors(size, dimensions, seed=size), now)
            fill_s = time.perf_counter() - started
            started = time.perf_counter()
            index = cache.refresh_bucket_sync(bucket)
            cold_ms = (time.perf_counter() - started) * 1000
            assert index is not None and len(index) == size, (size, index and len(index))
            queries = vectors(lookups, dimensions, seed=size + 1)
            warm, scan = [], []
            now_s = now.timestamp()
            for query in queries:
                started = time.perf_counter()
                refreshed = cache.refresh_bucket_sync(bucket)
                assert refreshed is index  # nothing changed: no reload
                neighbour = refreshed.nearest(query, now_s)
                warm.append((time.perf_counter() - started) * 1000)
                assert neighbour is not None
                started = time.perf_counter()
                index.nearest(query, now_s)
                scan.append((time.perf_counter() - started) * 1000)
            return {
                "fill_s": fill_s,
                "cold_ms": cold_ms,
                "warm_p50": percentile(warm, 0.5),
                "warm_p99": percentile(warm, 0.99),
                "scan_p50": percentile(scan, 0.5),
                "scan_p99": percentile(scan, 0.99),
                "index_mb": index.matrix.nbytes / 1e6,
            }
        finally:
            store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--dimensions", type=int, nargs="+", default=[256])
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    with ExitStack() as stack:
        database = stack.enter_context(temporary_database()) if args.postgres else None
        backend = "postgres" if args.postgres else "sqlite"
        for dimensions in args.dimensions:
            for size in args.sizes:
                print(f"  … {size} entries of {dimensions} dimensions ({backend})", flush=True)
                url = None
                if database is not None:
                    url = create_schema(database, f"bench_semantic_{dimensions}_{size}")
                rows.append(
                    (backend, dimensions, size, measure(size, dimensions, args.lookups, url))
                )
    print()
    print(
        f"{'store':<9}{'dims':>5}{'entries':>9}{'fill s':>8}{'cold ms':>9}"
        f"{'warm p50':>10}{'warm p99':>10}{'scan p50':>10}{'scan p99':>10}{'index MB':>10}"
    )
    for backend, dimensions, size, result in rows:
        print(
            f"{backend:<9}{dimensions:>5}{size:>9}{result['fill_s']:>8.1f}"
            f"{result['cold_ms']:>9.0f}{result['warm_p50']:>10.2f}{result['warm_p99']:>10.2f}"
            f"{result['scan_p50']:>10.2f}{result['scan_p99']:>10.2f}{result['index_mb']:>10.1f}"
        )
    print("(ms per lookup; warm = freshness check + scan; the embedding call is not included)")


if __name__ == "__main__":
    main()
