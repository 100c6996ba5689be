"""A view survives an event it cannot apply: it records a dead letter (position, view, topic,
error class), moves past it, and every other event — every other tenant's — is still
applied. Restart and `projections rebuild` work the same way. On both backends.

The poisoned event is written straight through the domain, as an event stored before the
edge refused such values would be: the read side must survive what is already in a log."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any
from uuid import UUID

from domain import commands as c
from gateway.bootstrap import build_services
from gateway.config import Settings
from projections import queries
from projections.audit import AuditView
from projections.runner import list_dead_letters
from tests.support.builders import funded_project, request_facts, writer_run
from tests.support.processes import ROOT, run_cli


def _settings(env: dict[str, str]) -> Settings:
    return Settings.from_env({"LEDGERGATE_SEED_CATALOG_PRICES": "0", **env})


def _project(services: Any, balance: str) -> UUID:
    return funded_project(writer_run(services.writer), balance)


def _rejection(project_id: UUID, model: str) -> c.RecordRejection:
    return c.RecordRejection(
        facts=request_facts(
            project_id,
            actor_id="alice",
            model=model,
            prompt_chars=2,
            deadline=timedelta(seconds=600),
        ),
        http_status=404,
        error_code="model_not_found",
        error_type="invalid_request_error",
        message="no such model",
    )


def _write_poisoned(services: Any, project_id: UUID, model: str) -> range:
    """Write a rejection for `model` in `project_id`: the log positions its events took."""
    before = services.writer.last_position
    services.writer.execute(_rejection(project_id, model))
    return range(before + 1, services.writer.last_position + 1)


class ExplodingAuditView(AuditView):
    """The audit view with a bug on one model name: stands for any event a view cannot
    apply, on either backend."""

    def apply(self, tx: Any, event: Any, position: int) -> None:
        if getattr(event, "model_requested", None) == "explodes":
            raise ValueError("a bug in the view")
        super().apply(tx, event, position)


def _head(services: Any) -> int:
    return int(services.app.recorder.max_notification_id() or 0)


def test_a_view_records_an_event_it_cannot_apply_and_keeps_every_other_tenant_current(
    backend,
) -> None:
    services = build_services(_settings(backend))
    services.runner.views[0] = ExplodingAuditView()
    services.start()
    try:
        victim = _project(services, "1.00")
        poisoned = _write_poisoned(services, victim, "explodes")
        services.writer.execute(_rejection(victim, "fine-model"))
        bystander = _project(services, "7.00")
        services.runner.catch_up()
        positions = services.runner.positions()
        assert set(positions.values()) == {_head(services)}, positions
        # The other tenant's balance is current; the event after the bad one is applied.
        assert queries.get_balance(services.store, str(bystander))["available"] == "7.000000000"
        audit = queries.list_audit(services.store, project_id=str(victim))
        assert [r["model_requested"] for r in audit["data"]] == ["fine-model"]
        letters = list_dead_letters(services.store)
        assert [(d["view"], d["error_class"], d["topic"]) for d in letters] == [
            ("audit", "ValueError", "domain.request:Request.Received")
        ]
        assert letters[0]["position"] in poisoned
        # Only the view that failed skipped it: the balances view has no dead letter.
        assert list_dead_letters(services.store, view="balances") == []
        # A rebuild clears the view's dead letters, replays, and records the failure again.
        services.runner.rebuild(["audit"])
        assert services.runner.view_position("audit") == _head(services)
        assert [d["position"] for d in list_dead_letters(services.store)] == [
            letters[0]["position"]
        ]
    finally:
        services.close()


def test_a_nul_already_in_the_log_does_not_stop_postgres_views_restart_or_rebuild(
    postgres_env, tmp_path
) -> None:
    env = {**postgres_env, "LEDGERGATE_DATA_DIR": str(tmp_path / "data")}
    services = build_services(_settings(env))
    services.start()
    try:
        victim = _project(services, "1.00")
        poisoned = _write_poisoned(services, victim, "gpt-4o-mini\x00")
        bystander = _project(services, "3.00")
        services.runner.catch_up()
        assert set(services.runner.positions().values()) == {_head(services)}
        assert queries.get_balance(services.store, str(bystander))["available"] == "3.000000000"
        letters = list_dead_letters(services.store)
        assert "audit" in {d["view"] for d in letters}
        assert all(d["position"] in poisoned and d["error_class"] == "DataError" for d in letters)
    finally:
        services.close()

    # A restart catches up past it (it used to exit), and so does a rebuild from the CLI.
    restarted = build_services(_settings(env))
    restarted.start()
    try:
        assert set(restarted.runner.positions().values()) == {_head(restarted)}
    finally:
        restarted.close()
    cli_env = {**os.environ, **env, "PYTHONPATH": str(ROOT), "LEDGERGATE_SEED_CATALOG_PRICES": "0"}
    rebuilt = run_cli(cli_env, "projections", "rebuild", timeout=120)
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    listed = run_cli(cli_env, "projections", "dead-letters", timeout=120)
    assert listed.returncode == 0, listed.stderr[-2000:]
    shown = json.loads(listed.stdout)
    assert any(
        d["view"] == "audit" and d["position"] in poisoned and d["error_class"] == "DataError"
        for d in shown["dead_letters"]
    )
    # The log line names view, position and error class, never the value.
    assert "\x00" not in rebuilt.stderr and "gpt-4o-mini" not in rebuilt.stderr
