"""Hot-account benchmark on the real PostgreSQL.

64 concurrent callers charge ONE project. Each charge is two-phase: reserve an estimate,
wait until it is durable, then post the actual and release the rest, wait until durable.

    group commit  callers submit their reserve and post commands to the GroupCommitWriter,
                  which decides each against the in-memory Account and saves a whole batch
                  in one transaction (the designed write path);
    naive         one `app.save` per charge (reserve+post events in one save), callers
                  serialised on a lock, the Account reloaded and the charge retried on a
                  conflict: the best a one-save-per-charge design can do.

The balance is sized so that it runs out before the callers are done: refusals are
expected, an overdraft never. After each run the Account is replayed from the store:
overdrafts (available < 0 after any event), lost charges (acknowledged but not stored) and
double charges (two settlements for one request) are counted from the replay.

Run:  /work/main/.venv/bin/python tests/benchmarks/bench_hot_account.py [--callers 64]
      [--charges-per-caller 150] [--runs 3] [--naive-seconds 4]
It creates and drops its own database on LEDGERGATE_TEST_POSTGRES_ADMIN_URL's server.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from eventsourcing.persistence import IntegrityError, RecordConflictError  # noqa: E402

from domain import commands as c  # noqa: E402
from domain.account import Account  # noqa: E402
from domain.application import LedgerApplication, open_application  # noqa: E402
from domain.errors import DomainError, InsufficientFunds, ReservationNotFound  # noqa: E402
from domain.handlers import UnitOfWork  # noqa: E402
from domain.ids import account_id  # noqa: E402
from domain.writer import GroupCommitWriter, run_now  # noqa: E402
from tests.support.builders import run_callers  # noqa: E402
from tests.support.ledger import post_plain_charge  # noqa: E402
from tests.support.postgres import temporary_database  # noqa: E402

RESERVE_AMOUNT = Decimal("0.010")
POST_AMOUNT = Decimal("0.007")


# --- the two ledger commands the callers send ----------------------------------------------


@dataclass(frozen=True)
class Reserve(c.Command):
    project_id: UUID
    request_id: str
    amount: Decimal


@dataclass(frozen=True)
class Post(c.Command):
    project_id: UUID
    request_id: str
    amount: Decimal


def _account(uow: UnitOfWork, project_id: UUID) -> Account:
    account = uow.find(account_id(project_id))
    if not isinstance(account, Account):
        raise DomainError("no account")
    return account


def reserve(account: Account, request_id: str, amount: Decimal, now: datetime) -> None:
    account.reserve(request_id=request_id, amount=amount, key_id=None, daily_budget=None, now=now)


def post(account: Account, request_id: str, amount: Decimal, now: datetime) -> Decimal:
    return post_plain_charge(
        account,
        request_id,
        amount,
        now,
        price_id="bench",
        model="bench",
        upstream_model="bench",
        input_tokens=100,
        output_tokens=100,
        actor_id="bench",
    )


class LedgerWriter(GroupCommitWriter):
    """The production writer with the two bench commands added to its handler table."""

    def _handle(self, command: c.Command, uow: UnitOfWork) -> Any:
        if isinstance(command, Reserve):
            reserve(
                _account(uow, command.project_id),
                command.request_id,
                command.amount,
                uow.clock.now(),
            )
            return None
        if isinstance(command, Post):
            return post(
                _account(uow, command.project_id),
                command.request_id,
                command.amount,
                uow.clock.now(),
            )
        return super()._handle(command, uow)


# --- runs ----------------------------------------------------------------------------------


@dataclass
class RunResult:
    cpu_s: float = field(init=False, default=0.0)  # this process's CPU time during the run
    charges: int
    refused: int
    seconds: float
    latencies_ms: list[float]
    acknowledged: set[str]
    project_id: UUID


def new_funded_project(app: LedgerApplication, balance: Decimal) -> UUID:
    project = run_now(app, c.CreateProject(name="hot", currency="USD")).value
    project_id = UUID(project["project_id"])  # type: ignore[index]
    run_now(app, c.TopUp(project_id=project_id, amount=balance, currency="USD", reference="fund"))
    return project_id


def run_group_commit(
    app: LedgerApplication, callers: int, per_caller: int, pipelined: bool = False
) -> RunResult:
    total = callers * per_caller
    # Enough for ~90% of the charges: the last ones must be refused, never overdrawn.
    balance = POST_AMOUNT * Decimal(int(total * 0.9))
    project_id = new_funded_project(app, balance)
    writer = LedgerWriter(app).start()
    latencies: list[list[float]] = [[] for _ in range(callers)]
    acknowledged: list[set[str]] = [set() for _ in range(callers)]
    refused = [0] * callers

    def caller(index: int) -> None:
        for n in range(per_caller):
            request_id = f"{index}-{n}-{uuid4().hex[:6]}"
            started = time.perf_counter()
            if pipelined:
                # The pair is queued back to back: the writer decides the post right after
                # the reserve (same or next batch); the caller waits once, for both.
                reserved = writer.submit(Reserve(project_id, request_id, RESERVE_AMOUNT))
                posted = writer.submit(Post(project_id, request_id, POST_AMOUNT))
                try:
                    reserved.result(60)
                except InsufficientFunds:
                    refused[index] += 1
                    try:
                        posted.result(60)
                    except ReservationNotFound:
                        pass
                    continue
                posted.result(60)
            else:
                try:
                    writer.execute(Reserve(project_id, request_id, RESERVE_AMOUNT))
                except InsufficientFunds:
                    refused[index] += 1
                    continue
                writer.execute(Post(project_id, request_id, POST_AMOUNT))
            latencies[index].append((time.perf_counter() - started) * 1000)
            acknowledged[index].add(request_id)

    seconds = run_callers(callers, caller)
    writer.stop()
    acked = set().union(*acknowledged)
    return RunResult(
        len(acked), sum(refused), seconds, [x for ls in latencies for x in ls], acked, project_id
    )


def run_naive(app: LedgerApplication, callers: int, seconds_max: float) -> RunResult:
    # Sized like the group-commit run would be for this duration, so refusals happen too.
    expected = int(seconds_max * 1200)
    project_id = new_funded_project(app, POST_AMOUNT * Decimal(int(expected * 0.9)))
    lock = threading.Lock()
    state: dict[str, Any] = {"account": app.repository.get(account_id(project_id))}
    latencies: list[float] = []
    acknowledged: set[str] = set()
    refused = [0]
    deadline = time.perf_counter() + seconds_max

    def caller(index: int) -> None:
        n = 0
        while time.perf_counter() < deadline:
            request_id = f"{index}-{n}-{uuid4().hex[:6]}"
            n += 1
            started = time.perf_counter()
            with lock:  # serialised callers: one save per charge
                while True:
                    account = state["account"]
                    now = datetime.now(UTC)
                    try:
                        reserve(account, request_id, RESERVE_AMOUNT, now)
                    except InsufficientFunds:
                        refused[0] += 1
                        break
                    post(account, request_id, POST_AMOUNT, now)
                    try:
                        app.save(account)
                    except (RecordConflictError, IntegrityError):
                        state["account"] = app.repository.get(account_id(project_id))
                        continue  # another writer won: reload and retry the charge
                    latencies.append((time.perf_counter() - started) * 1000)
                    acknowledged.add(request_id)
                    break

    seconds = run_callers(callers, caller)
    return RunResult(len(acknowledged), refused[0], seconds, latencies, acknowledged, project_id)


# --- verification by replay --------------------------------------------------------------------


def verify(app: LedgerApplication, result: RunResult) -> dict[str, int]:
    events = list(app.repository.event_store.get(account_id(result.project_id)))
    account = None
    overdrafts = 0
    for event in events:
        account = event.mutate(account)
        if account is not None and account.available < 0:
            overdrafts += 1
    settled = Counter(
        e.request_id
        for e in events
        if isinstance(e, Account.ChargePosted | Account.ReservationReleased)
    )
    posted = {e.request_id for e in events if isinstance(e, Account.ChargePosted)}
    return {
        "overdrafts": overdrafts,
        "lost": len(result.acknowledged - posted),
        "double": sum(1 for count in settled.values() if count > 1),
        "unacknowledged_stored": len(posted - result.acknowledged),
    }


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--charges-per-caller", type=int, default=150)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--naive-seconds", type=float, default=4.0)
    args = parser.parse_args()
    rows: dict[str, list[tuple[RunResult, dict[str, int]]]] = {
        "group commit, durable reserve then post": [],
        "group commit, pair queued together": [],
        "naive, one save per charge": [],
    }
    names = list(rows)
    with temporary_database("lg_bench") as url:
        app = open_application(url)
        try:
            for run in range(1, args.runs + 1):
                for name in names:
                    usage_before = resource.getrusage(resource.RUSAGE_SELF)
                    if name.startswith("naive"):
                        result = run_naive(app, args.callers, args.naive_seconds)
                    else:
                        result = run_group_commit(
                            app, args.callers, args.charges_per_caller, pipelined="pair" in name
                        )
                    usage_after = resource.getrusage(resource.RUSAGE_SELF)
                    result.cpu_s = (usage_after.ru_utime - usage_before.ru_utime) + (
                        usage_after.ru_stime - usage_before.ru_stime
                    )
                    rows[name].append((result, verify(app, result)))
                    print(
                        f"  run {run}/{args.runs} {name}: "
                        f"{result.charges / result.seconds:,.0f} charges/s",
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            app.close()
    print(
        f"\nHot account on PostgreSQL: {args.callers} concurrent callers, one project, "
        f"reserve+post per charge, median of {args.runs} runs\n"
    )
    header = (
        f"{'path':<42}{'charges/s':>11}{'min..max':>17}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'charges':>9}{'refused':>9}{'overdraft':>11}{'lost':>6}{'double':>8}"
        f"{'cpu ms/charge':>15}"
    )
    print(header)
    print("-" * len(header))
    medians: dict[str, float] = {}
    for name, results in rows.items():
        rates = [r.charges / r.seconds for r, _ in results]
        medians[name] = statistics.median(rates)
        latencies = [x for r, _ in results for x in r.latencies_ms]
        checks = Counter()
        for _, check in results:
            checks.update(check)
        print(
            f"{name:<42}{medians[name]:>11,.0f}{f'{min(rates):,.0f}..{max(rates):,.0f}':>17}"
            f"{percentile(latencies, 0.5):>9.1f}{percentile(latencies, 0.99):>9.1f}"
            f"{sum(r.charges for r, _ in results):>9}{sum(r.refused for r, _ in results):>9}"
            f"{checks['overdrafts']:>11}{checks['lost']:>6}{checks['double']:>8}"
            f"{1000 * sum(r.cpu_s for r, _ in results) / max(1, sum(r.charges for r, _ in results)):>15.3f}"
        )
    naive = medians[names[2]]
    print(
        f"\nratio to naive: two-phase {medians[names[0]] / naive:.1f}x, "
        f"pair {medians[names[1]] / naive:.1f}x   (latency is per charge: submit of the "
        "reserve to the durable post; load average at the end: "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )
    bad = sum(
        check["overdrafts"] + check["lost"] + check["double"]
        for rs in rows.values()
        for _, check in rs
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
