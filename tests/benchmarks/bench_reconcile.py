"""Benchmark: reconcile 10,000,000 ledger rows against a provider invoice.

    /work/main/.venv/bin/python tests/benchmarks/bench_reconcile.py [--rows N] [--runs 3]

Generates a synthetic ledger in the ledger-entries contract (parquet in a temp dir; the
generation is not timed): requests as reservation → charge → release triples over two
months, 4 providers × 3 models, 60 projects in EUR/USD/SEK, Decimal money. Then builds an
invoice for one provider and month from the true per-day/model sums, with known
perturbations (one line over-invoiced, one missing from the invoice, one extra invoice
model), writes it as the generic CSV, and times, end to end and in a fresh process per run:
read invoice + scan parquet + filter + aggregate + compare + render. Prints median and
spread of the runs and the peak RSS of the timed process, and checks the report found
exactly the planted discrepancies (a fast but wrong reconcile would otherwise pass).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import pyarrow as pa  # noqa: E402

from reconciliation.schema import LEDGER_ENTRIES_SCHEMA  # noqa: E402

PROVIDERS = {
    "openai": ["gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18", "o3-mini"],
    "anthropic": ["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"],
    "mistral": ["mistral-large-latest", "mistral-small-latest", "codestral-latest"],
    "google": ["gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.0-flash"],
}
CURRENCIES = ["EUR", "USD", "SEK"]
TARGET_PROVIDER = "openai"
TARGET_MONTH = "2026-09"
LIMIT_SECONDS = 10.0


def decimal_array(unscaled: np.ndarray, scale: int) -> pa.Array:
    """An Arrow decimal128 array straight from unscaled int64 values (no Python objects)."""
    words = np.empty((len(unscaled), 2), dtype=np.int64)
    words[:, 0] = unscaled
    words[:, 1] = np.where(unscaled < 0, -1, 0)
    return pa.Array.from_buffers(
        pa.decimal128(38, scale), len(unscaled), [None, pa.py_buffer(words.tobytes())]
    )


def generate_ledger(path: Path, unsorted_path: Path, rows: int, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    index = np.arange(rows, dtype=np.int64)
    kind = index % 3  # 0 reservation, 1 charge, 2 release
    request = index // 3
    requests = int(request.max()) + 1
    start_us = 1_785_542_400_000_000  # 2026-08-01T00:00:00Z
    span_us = 61 * 86_400 * 1_000_000  # August and September
    request_time = start_us + np.sort(rng.integers(0, span_us, requests))
    occurred = request_time[request] + kind * 1_500_000  # charge/release 1.5 s after
    project = rng.integers(0, 60, requests)[request]
    provider_index = rng.integers(0, len(PROVIDERS), requests)[request]
    model_index = rng.integers(0, 3, requests)[request]
    reserved_nanos = rng.integers(50_000_000, 2_000_000_000, requests)[request]
    cost_nanos = (reserved_nanos * rng.uniform(0.05, 0.9, requests)[request]).astype(np.int64)
    is_charge = kind == 1
    amount = np.where(
        kind == 0, reserved_nanos, np.where(is_charge, cost_nanos, reserved_nanos - cost_nanos)
    )
    provider_cost = (cost_nanos * 0.8).astype(np.int64)
    model_names = [model for models in PROVIDERS.values() for model in models]
    entry_type = np.array(["reservation", "charge", "release"])[kind]

    frame = pl.DataFrame(
        {
            "position": index + 1,
            "request_n": request,
            "kind": kind,
            "entry_type": entry_type,
            "occurred_at": pl.Series(occurred).cast(pl.Datetime("us", "UTC")),
            "project_n": project,
            "currency": np.array(CURRENCIES)[project % 3],
            "amount": pl.from_arrow(decimal_array(amount, 9)),
            "provider_n": provider_index,
            "model_n": provider_index * 3 + model_index,
            "input_tokens": np.where(is_charge, rng.integers(10, 5000, rows), 0),
            "output_tokens": np.where(is_charge, rng.integers(1, 2000, rows), 0),
            "provider_cost": pl.from_arrow(decimal_array(provider_cost, 9)),
            "fee_amount": pl.from_arrow(decimal_array((cost_nanos * 0.05).astype(np.int64), 9)),
        }
    )
    charge = pl.col("kind") == 1
    frame = frame.select(
        "position",
        pl.format("{}:{}", pl.col("request_n"), pl.col("kind") + 1).alias("entry_id"),
        "entry_type",
        "occurred_at",
        pl.format("proj_{}", "project_n").alias("project_id"),
        pl.format("req_{}", "request_n").alias("request_id"),
        pl.format("key_{}", "project_n").alias("key_id"),
        pl.lit(None, pl.Utf8).alias("actor_id"),
        "currency",
        "amount",
        pl.when(charge)
        .then(pl.col("provider_n").replace_strict(dict(enumerate(PROVIDERS)), return_dtype=pl.Utf8))
        .alias("provider"),
        pl.when(charge)
        .then(pl.col("model_n").replace_strict(dict(enumerate(model_names)), return_dtype=pl.Utf8))
        .alias("model"),
        pl.when(charge)
        .then(pl.col("model_n").replace_strict(dict(enumerate(model_names)), return_dtype=pl.Utf8))
        .alias("upstream_model"),
        pl.when(charge).then("input_tokens").alias("input_tokens"),
        pl.when(charge).then("output_tokens").alias("output_tokens"),
        pl.when(charge).then(pl.lit(0, pl.Int64)).alias("cached_tokens"),
        pl.when(charge).then("provider_cost").alias("provider_cost"),
        pl.when(charge).then(pl.lit("USD")).alias("provider_currency"),
        pl.when(charge).then(pl.lit(Decimal("0.92"), pl.Decimal(38, 12))).alias("fx_rate"),
        pl.when(charge).then("fee_amount").alias("fee_amount"),
        pl.when(charge).then(pl.lit("managed")).alias("key_source"),
        pl.when(charge).then(pl.lit("price_1")).alias("price_id"),
        pl.when(charge).then(pl.lit("fx_1")).alias("fx_rate_id"),
        pl.when(charge).then(pl.lit("provider")).alias("usage_source"),
    )
    frame = frame.cast(dict(LEDGER_ENTRIES_SCHEMA))  # type: ignore[arg-type]
    # Row groups of 1M rows: time-ordered, so a month filter can skip groups by statistics.
    frame.write_parquet(path, row_group_size=1_000_000, statistics=True)
    # The same rows shuffled into one row group: no statistics can skip anything, every row
    # is read and filtered. This is the worst case for an unordered export.
    frame.sample(fraction=1.0, shuffle=True, seed=seed).write_parquet(
        unsorted_path, row_group_size=rows, statistics=False
    )


def write_invoice(ledger: Path, invoice: Path) -> dict[str, str]:
    """Generic per-day invoice from the true sums, with three planted discrepancies."""
    truth = (
        pl.scan_parquet(ledger)
        .filter(
            (pl.col("entry_type") == "charge")
            & (pl.col("provider") == TARGET_PROVIDER)
            & (pl.col("occurred_at").dt.strftime("%Y-%m") == TARGET_MONTH)
        )
        .group_by(pl.col("occurred_at").dt.date().alias("date"), "upstream_model")
        .agg(pl.col("provider_cost").sum().alias("cost"))
        .sort("date", "upstream_model")
        .collect()
    )
    lines = ["date,provider,model,input_tokens,output_tokens,cost,currency"]
    planted = {}
    for number, row in enumerate(truth.iter_rows(named=True)):
        cost: Decimal = row["cost"]
        if number == 5:
            planted["over_invoiced"] = f"{row['date']} {row['upstream_model']}"
            cost += Decimal("3.25")
        if number == 9:
            planted["missing_in_invoice"] = f"{row['date']} {row['upstream_model']}"
            continue
        lines.append(f"{row['date']},{TARGET_PROVIDER},{row['upstream_model']},,,{cost},USD")
    lines.append(f"2026-09-15,{TARGET_PROVIDER},gpt-image-1,,,12.000000000,USD")
    planted["missing_in_ledger"] = "2026-09-15 gpt-image-1"
    invoice.write_text("\n".join(lines) + "\n")
    return planted


def load_store(ledger: Path, data_dir: Path) -> None:
    """Fill the real `lg_ledger_entries` view table (schema from the migrations, SQLite dialect) with the
    same rows, the way the projection stores them (money and time as text)."""
    from projections.db import ReadStore
    from projections.ledger_entries import LEDGER_COLUMNS

    store = ReadStore(None, str(data_dir))
    store.migrate()
    store.close()
    connection = sqlite3.connect(data_dir / "views.sqlite")
    # Loading is not what is measured: skip durability to keep generation short.
    connection.execute("PRAGMA journal_mode=OFF")
    connection.execute("PRAGMA synchronous=OFF")
    insert = (
        f"INSERT INTO lg_ledger_entries ({', '.join(LEDGER_COLUMNS)}) "
        f"VALUES ({', '.join('?' * len(LEDGER_COLUMNS))})"
    )
    frame = (
        pl.scan_parquet(ledger)
        .select(LEDGER_COLUMNS)
        .with_columns(
            pl.col("occurred_at").dt.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00"),
            *[
                pl.col(name).cast(pl.Utf8)
                for name in ("amount", "provider_cost", "fee_amount", "fx_rate")
            ],
        )
        .collect()
    )
    for chunk in frame.iter_slices(500_000):
        connection.executemany(insert, chunk.iter_rows())
    connection.execute(
        "INSERT INTO lg_tracking (view, position) VALUES ('ledger_entries', ?)", (frame.height,)
    )
    connection.commit()
    connection.close()


def load_postgres(ledger: Path, database_url: str) -> None:
    """The same rows into the real PostgreSQL view table (migrations/postgres), by COPY."""
    import io

    import psycopg

    from projections.db import ReadStore
    from projections.ledger_entries import LEDGER_COLUMNS

    store = ReadStore(database_url)
    store.migrate()
    store.close()
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("SET synchronous_commit = off")
        copy_sql = f"COPY lg_ledger_entries ({', '.join(LEDGER_COLUMNS)}) FROM STDIN (FORMAT csv)"
        for frame in (
            pl.scan_parquet(ledger).select(LEDGER_COLUMNS).collect().iter_slices(1_000_000)
        ):
            buffer = io.BytesIO()
            frame.with_columns(
                pl.col("occurred_at").dt.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00"),
                *[
                    pl.col(n).cast(pl.Utf8)
                    for n in ("amount", "provider_cost", "fee_amount", "fx_rate")
                ],
            ).write_csv(buffer, include_header=False)
            with connection.cursor().copy(copy_sql) as copy:
                copy.write(buffer.getvalue())
        connection.execute(
            "INSERT INTO lg_tracking (view, position) VALUES ('ledger_entries', %s)",
            (int(pl.scan_parquet(ledger).select(pl.len()).collect().item()),),
        )
        connection.execute("ANALYZE lg_ledger_entries")


TIMED_RUN = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
started = time.perf_counter()
import polars as pl
from reconciliation.invoices import read_invoice
from reconciliation.reconcile import reconcile, render_table
imported = time.perf_counter()
invoice = read_invoice(Path(sys.argv[2]))
if sys.argv[1].endswith(".parquet"):
    entries = pl.scan_parquet(sys.argv[1])
else:  # the read store: what `ledgergate reconcile` reads (SQLite directory or PostgreSQL URL)
    from projections.db import ReadStore
    from reconciliation.sources import entries_for_reconcile
    if sys.argv[1].startswith("postgresql://"):
        store = ReadStore(sys.argv[1])
    else:
        store = ReadStore(None, sys.argv[1])
    entries, _ = entries_for_reconcile(store, "openai", "2026-09")
    read = time.perf_counter()
report = reconcile(entries, invoice, "openai", "2026-09")
table = render_table(report)
finished = time.perf_counter()
print(json.dumps({
    "seconds": finished - imported,
    "read_seconds": (read - imported) if "read" in globals() else None,
    "seconds_with_imports": finished - started,
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec, so it would report
    # the parent's (generator's) memory instead of this process's own peak.
    "peak_rss_mib": next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024,
    "charges": report.ledger_charges,
    "lines": len(report.lines),
    "statuses": {f"{l.day} {l.model}": l.status for l in report.lines if l.status != "match"},
    "table_tail": table.splitlines()[-3:],
}))
"""


def load_untimed(store: str, load: Callable[[], None]) -> None:
    """Load the same rows into `store` outside the timings, saying how long it took."""
    print(f"loading the same rows into {store} (not timed) ...", flush=True)
    begun = time.perf_counter()
    load()
    print(f"  done in {time.perf_counter() - begun:.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="also time the PostgreSQL read store (a throwaway database on the test server)",
    )
    parser.add_argument(
        "--skip-store",
        action="store_true",
        help="skip the SQLite read-store scenario (its untimed load takes ~1.5 min at 10M rows)",
    )
    arguments = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_reconcile_") as directory:
        ledger = Path(directory) / "ledger.parquet"
        unsorted_ledger = Path(directory) / "ledger_unsorted.parquet"
        invoice = Path(directory) / "invoice.csv"
        print(f"generating {arguments.rows:,} ledger rows (not timed) ...", flush=True)
        begun = time.perf_counter()
        generate_ledger(ledger, unsorted_ledger, arguments.rows)
        planted = write_invoice(ledger, invoice)
        print(
            f"  done in {time.perf_counter() - begun:.1f} s; parquet "
            f"{ledger.stat().st_size / 2**20:.0f} MiB; invoice {len(invoice.read_text().splitlines()) - 1} lines",
            flush=True,
        )
        scenarios = {
            "time-ordered parquet (1M-row groups)": timed_runs(ledger, invoice, arguments.runs),
            "shuffled parquet (one row group)": timed_runs(
                unsorted_ledger, invoice, arguments.runs
            ),
        }
        if not arguments.skip_store:
            store_dir = Path(directory) / "store"
            load_untimed("the SQLite read store", lambda: load_store(ledger, store_dir))
            scenarios["SQLite read store (CLI path)"] = timed_runs(
                store_dir, invoice, arguments.runs
            )
        if arguments.postgres:
            from tests.support.postgres import temporary_database

            with temporary_database("lg_bench") as database_url:
                load_untimed("PostgreSQL", lambda: load_postgres(ledger, database_url))
                scenarios["PostgreSQL read store (CLI path)"] = timed_runs(
                    database_url, invoice, arguments.runs
                )

    results = next(iter(scenarios.values()))
    expected = {
        planted["over_invoiced"]: "under",  # invoice says more than the ledger
        planted["missing_in_invoice"]: "missing_in_invoice",
        planted["missing_in_ledger"]: "missing_in_ledger",
    }
    correct = all(run["statuses"] == expected for runs in scenarios.values() for run in runs)

    print()
    print(
        f"reconcile {arguments.rows:,} ledger rows ({results[0]['charges']:,} {TARGET_PROVIDER} "
        f"charges in {TARGET_MONTH}) on {os.cpu_count()} CPUs, polars {pl.__version__}, "
        f"{arguments.runs} runs each, fresh process per run"
    )
    header = f"{'scenario':<38}{'median s':>9}{'min s':>8}{'max s':>8}{'+import s':>10}{'Mrows/s':>9}{'peak RSS MiB':>13}{'/limit':>8}"
    print(header)
    print("-" * len(header))
    worst = 0.0
    for name, runs in scenarios.items():
        seconds = sorted(run["seconds"] for run in runs)
        median = statistics.median(seconds)
        worst = max(worst, median)
        print(
            f"{name:<38}{median:>9.2f}{seconds[0]:>8.2f}{seconds[-1]:>8.2f}"
            f"{statistics.median(run['seconds_with_imports'] for run in runs):>10.2f}"
            f"{arguments.rows / median / 1e6:>9.1f}"
            f"{max(run['peak_rss_mib'] for run in runs):>13.0f}{median / LIMIT_SECONDS:>8.2f}"
        )
    print()
    print(
        f"limit {LIMIT_SECONDS:.0f} s; report lines {results[0]['lines']}; planted discrepancies found exactly: {correct}"
    )
    print("\n".join(results[0]["table_tail"]))
    if not correct:
        print(f"expected {expected}")
        for name, runs in scenarios.items():
            print(f"{name}: found {runs[0]['statuses']}")
    if not correct or worst >= LIMIT_SECONDS:
        raise SystemExit(1)


def timed_runs(ledger: Path | str, invoice: Path, runs: int) -> list[dict]:
    results = []
    for run in range(runs):
        output = subprocess.run(
            [sys.executable, "-c", TIMED_RUN, str(ledger), str(invoice), str(ROOT)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        result = json.loads(output)
        results.append(result)
        read = result["read_seconds"]
        label = ledger.name if isinstance(ledger, Path) else "postgres"
        print(
            f"  {label} run {run + 1}: {result['seconds']:.2f} s"
            + (f" (SQL read + conversion {read:.2f} s)" if read is not None else "")
            + f", peak RSS {result['peak_rss_mib']:.0f} MiB",
            flush=True,
        )
    return results


if __name__ == "__main__":
    main()
