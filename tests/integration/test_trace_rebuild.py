"""The trace-span projection dropped and replayed from zero (`ledgergate projections
rebuild trace_spans`) ends with exactly the rows the incremental build produced: a tree
with failures, a stream, a closed and an expired trace, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import openai
import pytest

from domain.clock import FixedClock
from domain.ids import request_aggregate_id
from domain.trace import ExpireTrace
from gateway.serving import BackgroundServer
from gateway.simulator import SimulatorState
from projections.traces import TraceSpansView
from tests.support.harness import Gateway
from tests.support.statements import replayed_as_one_batch
from tests.support.traces import clocked_gateway

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = [{"role": "user", "content": "Summarise the ledger."}]
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def clocked(
    backend: dict[str, str], simulator: tuple[BackgroundServer, SimulatorState]
) -> Iterator[tuple[Gateway, FixedClock]]:
    clock = FixedClock(START)
    for gateway in clocked_gateway(backend, simulator[0].base_url, clock):
        yield gateway, clock


def rows(gateway: Gateway) -> dict[str, list[tuple[str, ...]]]:
    content: dict[str, list[tuple[str, ...]]] = {}
    with gateway.services.store.transaction(write=False) as tx:
        for table in TraceSpansView.tables:
            found = tx.execute(f"SELECT * FROM {table}").fetchall()  # noqa: S608
            content[table] = sorted(tuple(f"{k}={row[k]}" for k in sorted(row)) for row in found)
    return content


def traced_workload(gateway: Gateway, clock: FixedClock, upstream: SimulatorState) -> None:
    tenant = gateway.tenant()
    client = gateway.openai(tenant)
    with gateway.client() as http:
        opened = [
            http.post(
                "/v1/traces",
                json={
                    "name": f"agent {n}",
                    "budget": "1",
                    "allowed_models": ["gpt-4o-mini"],
                    "expires_in_s": 3600,
                    "metadata": {"run": str(n)},
                },
                headers=tenant.headers(),
            ).json()["id"]
            for n in range(2)
        ]

    def span(trace_id: str, parent: str | None = None, **kw) -> str:
        clock.set(clock.now() + timedelta(seconds=2))
        headers = {"X-Trace-Id": trace_id, **({"X-Parent-Span-Id": parent} if parent else {})}
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers, **kw
        )
        if kw.get("stream"):
            list(raw.parse())
        return str(raw.headers["x-request-id"])

    root = span(opened[0])
    child = span(opened[0], root, stream=True, stream_options={"include_usage": True})
    span(opened[0], child)
    upstream.error_status = 500
    with pytest.raises(openai.APIStatusError):
        span(opened[0], root)
    upstream.error_status = None
    span(opened[1])
    with gateway.client() as http:
        http.post(f"/v1/traces/{opened[0]}/close", headers=tenant.headers())
    # The second trace's expiry, observed past it.
    clock.set(START + timedelta(seconds=3601))
    gateway.execute(ExpireTrace(trace_id=opened[1], project_id=tenant.project_id, mode="live"))


def test_rebuilding_the_trace_spans_view_reproduces_the_incremental_rows(
    clocked: tuple[Gateway, FixedClock], simulator, backend
) -> None:
    gateway, clock = clocked
    traced_workload(gateway, clock, simulator[1])
    gateway.settle()
    before = rows(gateway)
    assert len(before["lg_traces"]) == 2 and len(before["lg_trace_spans"]) == 5
    assert any("status=expired" in cell for row in before["lg_traces"] for cell in row)
    env = {**os.environ, **backend, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "projections", "rebuild", "--view", "trace_spans"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rebuilt"] == ["trace_spans"]
    gateway.settle()
    assert rows(gateway) == before


def test_applying_every_trace_event_a_second_time_changes_no_row(
    clocked: tuple[Gateway, FixedClock], simulator
) -> None:
    """Each apply step is idempotent on its own (inserts by key, roll-ups by the difference
    to the row), beyond the runner skipping positions it has passed."""
    gateway, clock = clocked
    traced_workload(gateway, clock, simulator[1])
    gateway.settle()
    before = rows(gateway)
    view = TraceSpansView()
    applied = 0
    with gateway.services.store.transaction() as tx:
        for notification in gateway.services.app.recorder.select_notifications(
            start=1, limit=100_000
        ):
            event = gateway.services.app.mapper.to_domain_event(notification)
            if view.handles(event):
                view.apply(tx, event, notification.id)
                applied += 1
    assert applied >= 20  # 2 opened, 5 joined, 5 dispatched, 1 stream, 5 ends, 1 close, 1 expiry
    assert rows(gateway) == before


def test_one_batch_reads_its_spans_once_and_runs_nothing_for_requests_outside_a_trace(
    clocked: tuple[Gateway, FixedClock], simulator
) -> None:
    """Most requests are in no governed trace: a batch finds out which of its requests are
    spans in one read, and their span events cost no statement; the rows end as the live
    view left them, event by event."""
    gateway, clock = clocked
    traced_workload(gateway, clock, simulator[1])
    client = gateway.openai(gateway.tenant())
    untraced = []
    for stream in (False, True, False):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=stream
        )
        if stream:
            list(raw.parse())
        untraced.append(str(request_aggregate_id(raw.headers["x-request-id"])))
    gateway.settle()
    before = rows(gateway)
    counting, events = replayed_as_one_batch(
        gateway.services.runner, gateway.services.store, "trace_spans"
    )
    lookups = [s for s in counting.statements if "aggregate_id IN" in s]
    assert len(lookups) == 1
    touching = [
        sql
        for sql, params in zip(counting.statements, counting.params, strict=True)
        if "aggregate_id IN" not in sql and any(str(p) in untraced for p in params or ())
    ]
    assert touching == [] and len(events) > 20
    assert rows(gateway) == before
