"""Durable events per second through the group-commit writer against one save per
transaction, on SQLite and on the real PostgreSQL, in the same run.

    .venv/bin/python -m tests.benchmarks.bench_group_commit [--callers 64] [--requests 20] [--runs 3]

Workload: CALLERS threads, each running REQUESTS full request lifecycles (AdmitRequest:
received + admitted + dispatched + reserved; CompleteRequest: completed + charge posted)
against one hot project's account. Every command's events are durable when its caller
returns. "one save per transaction" is the same writer with a batch size of one.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

from domain.application import open_application
from domain.writer import GroupCommitWriter
from tests.support.builders import priced_project, run_callers, served_request
from tests.support.ledger import replay_account
from tests.support.postgres import temporary_database


def run_once(
    database_url: str | None, data_dir: str, callers: int, requests: int, batch_max: int
) -> tuple[int, float, int]:
    app = open_application(database_url, data_dir)
    writer = GroupCommitWriter(app, batch_commands_max=batch_max).start()
    project_id = priced_project(writer)
    start_position = app.recorder.max_notification_id() or 0

    def caller(_: int) -> None:
        for _ in range(requests):
            served_request(writer, project_id)

    elapsed = run_callers(callers, caller)
    events = (app.recorder.max_notification_id() or 0) - start_position
    replay = replay_account(app, project_id)
    problems = (
        int(replay.pending != 0)
        + int(replay.charge_events != callers * requests)
        + int(replay.lowest_available < 0)
    )
    writer.stop()
    app.close()
    return events, elapsed, problems


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with temporary_database("lg_bench") as pg_url:
        for backend in ("sqlite", "postgres"):
            results = {}
            for mode, batch_max in (("group commit", 512), ("one save per transaction", 1)):
                rates = []
                for run in range(args.runs):
                    with tempfile.TemporaryDirectory() as tmp:
                        url = None
                        if backend == "postgres":
                            from tests.support.postgres import create_schema

                            url = create_schema(pg_url, f"b_{batch_max}_{run}")
                        events, elapsed, problems = run_once(
                            url, tmp, args.callers, args.requests, batch_max
                        )
                        if problems:
                            raise SystemExit(f"ledger check failed on {backend}/{mode}")
                        rates.append(events / elapsed)
                        print(
                            f"  {backend:8} {mode:26} run {run + 1}: {events / elapsed:9,.0f} events/s",
                            flush=True,
                        )
                results[mode] = statistics.median(rates)
            ratio = results["group commit"] / results["one save per transaction"]
            for mode, rate in results.items():
                rows.append((backend, mode, rate, ratio if mode == "group commit" else 1.0))
    print()
    print(
        f"{args.callers} callers x {args.requests} request lifecycles (6 events each), one hot account, median of {args.runs}"
    )
    print(f"{'backend':10}{'write path':28}{'durable events/s':>18}{'vs one-save':>13}")
    for backend, mode, rate, ratio in rows:
        print(f"{backend:10}{mode:28}{rate:18,.0f}{ratio:12.1f}x")


if __name__ == "__main__":
    main()
