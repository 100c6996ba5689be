"""What a governed trace costs at admission, and that its budget holds under load.

Callers submit AdmitRequest + CompleteRequest pairs for ONE project through the
group-commit writer (the designed write path), in three modes:

    plain       no trace: the reservation holds the balance and the key's budget only
    trace       every request joins one trace (a named limit on the Account) at depth 1
    tree        every request joins one trace under a parent span (depth 2): admission
                also reads the parent request

The trace's budget is sized so it runs out before the callers are done: refusals
(trace_budget_exceeded) are expected, an overshoot never. After each run the Account is
replayed from the store and the trace's holds plus charges are checked at every event.

Run:  .venv/bin/python tests/benchmarks/bench_trace_admission.py [--requests 3000]
      [--callers 32] [--store sqlite|memory]
Prints one table: requests settled per second per mode, refusals, peak use of the budget.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from domain import commands as c  # noqa: E402
from domain.account import Account  # noqa: E402
from domain.application import LedgerApplication, open_application  # noqa: E402
from domain.clock import FixedClock  # noqa: E402
from domain.errors import DomainError  # noqa: E402
from domain.ids import account_id, new_request_id  # noqa: E402
from domain.limits import LimitsHeld  # noqa: E402
from domain.trace import OpenTrace, TraceContract, new_trace_id  # noqa: E402
from domain.writer import GroupCommitWriter  # noqa: E402
from tests.support.ledger import MODEL, Ledger, admit_command  # noqa: E402

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TOKENS = 200  # per side: each request reserves 200 x 0.15 + 200 x 0.60 per Mtok + 5 %


def open_trace(ledger: Ledger, project: UUID, budget: Decimal) -> str:
    contract = TraceContract(
        trace_id=new_trace_id(),
        project_id=project,
        mode="live",
        key_id=None,
        actor_id=None,
        name="bench",
        budget=budget,
        max_depth=4,
        allowed_models_requested=(MODEL,),
        allowed_models=(MODEL,),
    )
    return str(ledger.run(OpenTrace(contract))["id"])


def run_mode(app: LedgerApplication, mode: str, requests: int, callers: int) -> dict[str, Any]:
    ledger = Ledger(FixedClock(NOW), app)
    ledger.price(effective_from=NOW - timedelta(days=1))
    project = ledger.project(balance="1000000")
    estimate = Decimal(
        ledger.admit(project, input_tokens=TOKENS, output_tokens=TOKENS)["estimated_cost"]
    )
    # Charges are ~60 % of the estimate (half the output reserved is used): about 80 % of
    # the requests fit, the rest are refused.
    budget = estimate * (requests // 2)
    trace_id = parent = None
    if mode != "plain":
        trace_id = open_trace(ledger, project, budget)
    if mode == "tree":
        command = replace(
            admit_command(project, NOW, input_tokens=TOKENS, output_tokens=TOKENS),
            trace=c.TraceJoin(trace_id or ""),
        )
        parent = ledger.run(command)["request_id"]
    writer = GroupCommitWriter(app, clock=ledger.clock).start()
    refusals = 0

    def one(_: int) -> int:
        command = admit_command(
            project, NOW, request_id=new_request_id(), input_tokens=TOKENS, output_tokens=TOKENS
        )
        if trace_id is not None:
            command = replace(command, trace=c.TraceJoin(trace_id, parent))
        try:
            writer.execute(command)
        except DomainError as error:
            if error.code != "trace_budget_exceeded":
                raise
            return 1
        writer.execute(
            c.CompleteRequest(
                request_id=command.facts.request_id,
                usage=c.UsageReport(TOKENS, TOKENS // 2, 0, "provider"),
                finish_reason="stop",
                completion_chars=400,
                completion_sha256=None,
                latency_ms=1,
                upstream_ms=1,
            )
        )
        return 0

    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=callers) as pool:
            refusals = sum(pool.map(one, range(requests)))
    finally:
        writer.stop()
    seconds = time.perf_counter() - started
    peak = Decimal(0)
    if trace_id is not None:
        in_use, held = Decimal(0), {}
        for event in app.events.get(account_id(project)):
            if isinstance(event, LimitsHeld):
                held[event.request_id] = event.amount
                in_use += event.amount
            elif isinstance(event, Account.ChargePosted) and event.request_id in held:
                in_use += event.amount - held.pop(event.request_id)
            peak = max(peak, in_use)
    return {
        "mode": mode,
        "requests": requests,
        "seconds": seconds,
        "per_s": (requests - refusals) / seconds,
        "refusals": refusals,
        "budget": budget if trace_id else None,
        "peak": peak if trace_id else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--store", choices=("sqlite", "memory"), default="sqlite")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; store {args.store}")
    print(f"{'mode':<6} {'requests':>8} {'seconds':>8} {'settled/s':>10} {'refused':>8} "
          f"{'budget':>14} {'peak use':>14} {'overshoot':>9}")  # fmt: skip
    for mode in ("plain", "trace", "tree"):
        with tempfile.TemporaryDirectory() as tmp:
            if args.store == "memory":
                app = LedgerApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
            else:
                app = open_application(f"sqlite:///{tmp}/events.sqlite")
            row = run_mode(app, mode, args.requests, args.callers)
            print(f"  … {mode} done", file=sys.stderr)
        over = (
            "-"
            if row["budget"] is None
            else format(max(row["peak"] - row["budget"], Decimal(0)), "f")
        )
        print(
            f"{row['mode']:<6} {row['requests']:>8} {row['seconds']:>8.2f} {row['per_s']:>10.0f} "
            f"{row['refusals']:>8} {str(row['budget'] or '-'):>14} {str(row['peak'] or '-'):>14} "
            f"{over:>9}"
        )


if __name__ == "__main__":
    main()
