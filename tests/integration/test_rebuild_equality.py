"""Every projection, dropped and replayed from zero (`ledgergate projections rebuild`),
ends with exactly the content the incremental build produced."""

from __future__ import annotations

import json
import os
from typing import Any

import openai
import pytest

from projections.runner import default_views
from tests.support.harness import Gateway
from tests.support.processes import ROOT, run_cli
from tests.support.statements import replayed_as_one_batch

MESSAGES = [{"role": "user", "content": "What is double-entry bookkeeping?"}]


def snapshot(gateway: Gateway) -> dict[str, list[tuple[str, ...]]]:
    content: dict[str, list[tuple[str, ...]]] = {}
    with gateway.services.store.transaction(write=False) as tx:
        for view in default_views():
            for table in view.tables:
                rows = tx.execute(f"SELECT * FROM {table}").fetchall()  # noqa: S608
                content[table] = sorted(tuple(f"{k}={row[k]}" for k in sorted(row)) for row in rows)
    return content


def mixed_workload(gateway: Gateway, simulator_state: Any) -> None:
    rich, poor = gateway.tenant(balance="5.00"), gateway.tenant(balance="0.000000001")
    client = gateway.openai(rich)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    with pytest.raises(openai.APIStatusError):
        gateway.openai(poor).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    simulator_state.error_status = 500
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    simulator_state.error_status = None
    simulator_state.fail_after_chunks = 2
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    with gateway.client() as http:
        http.post("/v1/chat/completions", content=b"{oops", headers=rich.headers())


def test_rebuilding_every_view_from_the_log_reproduces_the_incremental_views(
    gateway: Gateway, simulator, backend
) -> None:
    mixed_workload(gateway, simulator[1])
    gateway.settle()
    before = snapshot(gateway)
    assert sum(len(rows) for rows in before.values()) > 0
    env = {**os.environ, **backend, "PYTHONPATH": str(ROOT)}
    done = run_cli(env, "projections", "rebuild", timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result["rebuilt"]) == {view.name for view in default_views()}
    gateway.settle()
    assert snapshot(gateway) == before


def test_replaying_a_batch_twice_changes_nothing(gateway: Gateway, simulator) -> None:
    mixed_workload(gateway, simulator[1])
    gateway.settle()
    before = snapshot(gateway)
    runner = gateway.services.runner
    # Force the runner to see already-applied notifications again: they must be no-ops.
    with gateway.services.store.transaction() as tx:
        view = runner.views[0]
        position = tx.execute(
            "SELECT position FROM lg_tracking WHERE view = %s", (view.name,)
        ).fetchone()["position"]
    decoded = [
        (n.id, n, gateway.services.app.mapper.to_domain_event(n))
        for n in gateway.services.app.recorder.select_notifications(start=1, limit=10_000)
    ]
    for each in runner.views:
        with gateway.services.store.transaction() as tx:
            runner._apply_view(tx, each, decoded, read_from=0)
    assert snapshot(gateway) == before
    assert runner.view_position(runner.views[0].name) == position


def test_a_batch_read_before_a_rebuild_never_skips_the_rebuilt_views_history(
    gateway: Gateway, simulator, backend
) -> None:
    """The background runner may have read a batch past a view's position when a rebuild
    moves that view back to zero; applying that batch would jump the view over everything
    before it (seen: an empty usage view after `rebuild` on PostgreSQL)."""
    mixed_workload(gateway, simulator[1])
    gateway.settle()
    before = snapshot(gateway)
    runner, store = gateway.services.runner, gateway.services.store
    usage = next(view for view in runner.views if view.name == "usage")
    read_from = runner.view_position("usage") - 2  # a batch of the last two events
    batch = [
        (n.id, n, runner.app.mapper.to_domain_event(n))
        for n in runner.app.recorder.select_notifications(
            start=read_from, limit=10, inclusive_of_start=False
        )
    ]
    assert batch, "the workload wrote events"
    with store.transaction() as tx:  # what a rebuild does first
        usage.reset(tx)
        tx.execute("UPDATE lg_tracking SET position = 0 WHERE view = %s", ("usage",))
    with store.transaction() as tx:  # the stale batch arrives: it must not be applied
        runner._apply_view(tx, usage, batch, read_from=read_from)
    assert runner.view_position("usage") == 0
    runner.catch_up()
    assert snapshot(gateway) == before


def _replayed_as_one_batch(gateway: Gateway, name: str) -> tuple[list[str], list[Any]]:
    counting, events = replayed_as_one_batch(gateway.services.runner, gateway.services.store, name)
    return counting.statements, events


def test_the_audit_view_writes_a_batch_per_kind_of_row_and_the_rows_events_one_by_one_leave(
    gateway: Gateway, simulator, backend
) -> None:
    """The audit view merges what a batch's events set on each request and writes each
    request once: replayed as one batch, the whole workload costs a statement per kind of
    row (at most one per request, and no read), and leaves exactly the rows the
    live view built from small batches, event by event."""
    mixed_workload(gateway, simulator[1])
    gateway.settle()
    before = snapshot(gateway)["lg_audit"]
    statements, events = _replayed_as_one_batch(gateway, "audit")
    writes = [s for s in statements if "lg_audit " in s and "SELECT" not in s]
    reads = [s for s in statements if "SELECT attempt_log" in s]
    assert len(events) > 3 * len(before) > 0  # several events per request
    # One statement per kind of row (the workload's requests end five different ways),
    # never one per event: at most one per request.
    assert len(writes) <= len(before), writes
    assert reads == []  # each request's Received is in the batch: no attempt log read back
    assert snapshot(gateway)["lg_audit"] == before


def test_the_router_stats_keep_a_batchs_in_flight_attempts_in_memory(
    gateway: Gateway, simulator, backend
) -> None:
    """A request admitted, dispatched and finished within one batch never touches the
    in-flight table, and the batch's outcomes go in one statement; the tables end as the
    live view left them, event by event."""
    mixed_workload(gateway, simulator[1])
    gateway.settle()
    before = snapshot(gateway)
    statements, _ = _replayed_as_one_batch(gateway, "router_stats")
    assert not [s for s in statements if "lg_router_attempts" in s]
    assert len([s for s in statements if "lg_router_outcomes" in s]) == 1
    after = snapshot(gateway)
    assert (
        before["lg_router_outcomes"] and after["lg_router_outcomes"] == before["lg_router_outcomes"]
    )
    assert after["lg_router_attempts"] == before["lg_router_attempts"] == []


def test_the_ledger_and_project_event_views_write_a_batch_in_one_statement_per_table(
    gateway: Gateway, simulator, backend
) -> None:
    """Replayed as one batch, the ledger entries of the whole workload go in one INSERT, and
    the project events with their aggregates' owners in one each: the tables end as the live
    views left them, event by event."""
    mixed_workload(gateway, simulator[1])
    gateway.settle()
    before = snapshot(gateway)
    assert len(before["lg_ledger_entries"]) > 4 and len(before["lg_project_aggregates"]) > 4
    ledger, _ = _replayed_as_one_batch(gateway, "ledger_entries")
    assert len([s for s in ledger if "lg_ledger_entries" in s]) == 1
    events, _ = _replayed_as_one_batch(gateway, "project_events")
    assert len([s for s in events if "INSERT INTO lg_project_events" in s]) == 1
    assert len([s for s in events if "lg_project_aggregates" in s]) == 1
    after = snapshot(gateway)
    for table in ("lg_ledger_entries", "lg_project_events", "lg_project_aggregates"):
        assert after[table] == before[table], table
