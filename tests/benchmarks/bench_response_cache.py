"""Response-cache latency through the gateway: a hit against a miss, p50/p99.

    .venv/bin/python -m tests.benchmarks.bench_response_cache [--requests 200]
        [--upstream-delay-ms 0 200] [--postgres]

A gateway (SQLite event store in a temporary directory, the embedded default; PostgreSQL
with --postgres) in front of the simulated OpenAI upstream, which answers after each
--upstream-delay-ms (0 shows the gateway's own costs; a few hundred ms is a real model).
Sequential requests on one keep-alive client, `temperature: 0` (auto mode): a "miss" is a
prompt never sent before (lookup, upstream call, seal and store); a "hit" repeats one warmed
prompt (lookup, decrypt, audit events, zero charge). Each request is still received,
admitted and completed in the ledger, so a hit costs the durable lifecycle events. A
"semantic" hit sends `X-LG-Cache-Semantic: 0.8` with a new wording of a warmed prompt each
time: exact miss, then the prompt is embedded by an embeddings request of the caller's
(admitted, sent to the upstream, completed), the bucket scanned, the entry decrypted.

After the gateway table it prints the semantic lookup table at 1k / 10k / 100k entries
(tests/benchmarks/bench_semantic_cache.py; skip it with --no-lookup-table).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from contextlib import ExitStack

import httpx

from gateway.simulator import SimulatorState
from tests.benchmarks import bench_semantic_cache
from tests.support.harness import simulated_gateway
from tests.support.postgres import create_schema, temporary_database


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]


def run(requests: int, delay_ms: float, database_url: str | None) -> dict[str, list[float]]:
    state = SimulatorState(response_delay_s=delay_ms / 1000)
    with tempfile.TemporaryDirectory() as data_dir, ExitStack() as stack:
        env = {"LEDGERGATE_DATA_DIR": data_dir}
        if database_url:
            env["LEDGERGATE_DATABASE_URL"] = database_url
        gateway = stack.enter_context(simulated_gateway(env, state))
        gateway.set_price("text-embedding-3-small", "0.02", "0")
        tenant = gateway.tenant(balance="1000.00")
        client = stack.enter_context(httpx.Client(base_url=gateway.base_url, timeout=60))

        def ask(prompt: str, semantic: bool = False) -> tuple[float, str]:
            headers = tenant.headers()
            if semantic:
                headers["X-LG-Cache-Semantic"] = "0.8"
            started = time.perf_counter()
            response = client.post(
                "/v1/chat/completions",
                headers=headers,
                json={
                    "model": "gpt-4o-mini",
                    "temperature": 0,
                    "messages": [{"role": "user", "content": prompt}],
                },
            )
            elapsed_ms = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            return elapsed_ms, response.headers["x-lg-cache"]

        for index in range(5):  # warm up connections, caches and the JIT-less paths
            ask(f"warm-up {index}")
        timings: dict[str, list[float]] = {"miss": [], "hit": [], "semantic": []}
        ask("the repeated prompt")
        warmed = "please tell me the capital city of sweden and its population today"
        ask(warmed, semantic=True)
        for index in range(requests):
            elapsed, outcome = ask(f"a new prompt {index}")
            assert outcome == "miss", outcome
            timings["miss"].append(elapsed)
            elapsed, outcome = ask("the repeated prompt")
            assert outcome == "hit", outcome
            timings["hit"].append(elapsed)
            elapsed, outcome = ask(f"{warmed} (asked {index} times)", semantic=True)
            assert outcome == "hit", outcome
            timings["semantic"].append(elapsed)
            if (index + 1) % 50 == 0:
                print(f"  … {index + 1}/{requests} pairs", flush=True)
        return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--upstream-delay-ms", type=float, nargs="+", default=[0.0, 200.0])
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--no-lookup-table", action="store_true")
    args = parser.parse_args()
    rows = []
    with ExitStack() as stack:
        database = stack.enter_context(temporary_database()) if args.postgres else None
        backend = "postgres" if args.postgres else "sqlite"
        for delay_ms in args.upstream_delay_ms:
            print(f"upstream delay {delay_ms:g} ms, {args.requests} miss/hit pairs ({backend})")
            database_url = None
            if database is not None:  # a fresh schema per run: no entry carries over
                database_url = create_schema(database, f"bench_cache_{len(rows)}")
            timings = run(args.requests, delay_ms, database_url)
            for outcome in ("miss", "hit", "semantic"):
                values = timings[outcome]
                rows.append(
                    (
                        backend,
                        f"{delay_ms:g}",
                        outcome,
                        percentile(values, 0.50),
                        percentile(values, 0.99),
                        statistics.fmean(values),
                    )
                )
    print()
    print(
        f"{'store':<9}{'upstream ms':>12}  {'outcome':<8}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}"
    )
    for backend, delay, outcome, p50, p99, mean in rows:
        print(f"{backend:<9}{delay:>12}  {outcome:<8}{p50:>9.2f}{p99:>9.2f}{mean:>9.2f}")
    if not args.no_lookup_table:
        print("\nsemantic lookup at 1k / 10k / 100k entries in one bucket")
        bench_semantic_cache.main(["--postgres"] if args.postgres else [])


if __name__ == "__main__":
    main()
