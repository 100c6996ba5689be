"""The forgery of issue 13: one SQL UPDATE turns a 20 USD top-up into 20,000 USD in the
stored event. Every replay would agree with it; the Merkle log does not. `ledgergate verify
--live` and `ledgergate audit export` + `ledgergate verify DIR` both name the forged
position; the live check records an alarm event and logs an error line. Plus: the signing
key is created once on first start, private (0600), and only its public half is logged."""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from gateway.cli import main
from tests.support.ledger import store_application
from tests.support.postgres import create_schema

FORGED_FROM, FORGED_TO = b'"20.000000000"', b'"20000.000000000"'


@pytest.fixture(params=["sqlite", "postgres"])
def store_env(request, tmp_path, monkeypatch):
    env = {"LEDGERGATE_DATA_DIR": str(tmp_path / "data")}
    if request.param == "postgres":
        env["LEDGERGATE_DATABASE_URL"] = create_schema(
            request.getfixturevalue("postgres_database"), "forgery_" + secrets.token_hex(5)
        )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LEDGERGATE_AUDIT_SIGNING_KEY_FILE", raising=False)
    return env


@pytest.fixture(autouse=True)
def audit_logs(caplog):
    """`ledgergate` configures the process's logging afresh (root handlers replaced), which
    would drop caplog's handler: hang it on the audit loggers themselves."""
    loggers = [logging.getLogger("ledgergate.audit"), logging.getLogger("ledgergate.audit_tree")]
    for logger in loggers:
        logger.addHandler(caplog.handler)
    yield
    for logger in loggers:
        logger.removeHandler(caplog.handler)


def _cli(capsys, *argv):
    status = main(list(argv))
    out = capsys.readouterr().out.strip().splitlines()
    return status, json.loads(out[-1]) if out else None


def _forge(env) -> int:
    """The attacker's one UPDATE; returns the forged event's position."""
    url = env.get("LEDGERGATE_DATABASE_URL")
    if url:
        schema = re.search(r"schema=([^&]+)", url).group(1)
        with psycopg.connect(url.split("?")[0], options=f"-c search_path={schema}") as db:
            row = db.execute(
                "UPDATE ledgergate_events SET state = convert_to(replace(convert_from(state, "
                "'UTF8'), %s, %s), 'UTF8') WHERE topic LIKE '%%ToppedUp' RETURNING notification_id",
                (FORGED_FROM.decode(), FORGED_TO.decode()),
            ).fetchone()
            return int(row[0])
    with sqlite3.connect(Path(env["LEDGERGATE_DATA_DIR"]) / "events.sqlite") as db:
        (position, state) = db.execute(
            "SELECT rowid, state FROM stored_events WHERE topic LIKE '%ToppedUp'"
        ).fetchone()
        db.execute(
            "UPDATE stored_events SET state = ? WHERE rowid = ?",
            (state.replace(FORGED_FROM, FORGED_TO), position),
        )
        return int(position)


def test_the_sql_update_forgery_is_caught_live_and_in_an_export(
    store_env, capsys, caplog, tmp_path
):
    status, created = _cli(capsys, "project", "create", "--name", "victim")
    project = created["project_id"]
    status, _ = _cli(
        capsys, "topup", "--project", project, "--amount", "20", "--currency", "USD",
        "--reference", "wire-1",
    )  # fmt: skip
    assert status == 0
    status, checkpoint = _cli(capsys, "audit", "checkpoint")
    assert status == 0 and checkpoint["size"] >= 2
    vkey = checkpoint["public_key"]
    status, report = _cli(capsys, "verify", "--live")
    assert status == 0 and report["ok"] and report["verified_size"] == checkpoint["size"]

    position = _forge(store_env)
    with store_application(store_env) as app:
        forged = app.recorder.select_notifications(start=position, limit=1)[0]
        assert FORGED_TO in forged.state  # the forgery is really in the store

    with caplog.at_level(logging.ERROR, logger="ledgergate.audit"):
        status, report = _cli(capsys, "verify", "--live")
    assert status == 1
    assert report["divergence"]["kind"] == "altered"
    assert report["divergence"]["position"] == position
    assert any(
        "AUDIT INTEGRITY ALARM" in r.getMessage() and f"position {position}" in r.getMessage()
        for r in caplog.records
    )
    with store_application(store_env) as app:
        alarms = [
            n for n in app.recorder.select_notifications(start=1, limit=1000)
            if n.topic.endswith("AuditIntegrityAlarm.AlarmRaised")
        ]  # fmt: skip
        assert len(alarms) == 1
        alarm = app.mapper.to_domain_event(alarms[0])
        assert (alarm.kind, alarm.position, alarm.checkpoint_size) == (
            "altered",
            position,
            checkpoint["size"],
        )

    # The offline path: export, then the installed console script verifies it.
    status, manifest = _cli(capsys, "audit", "export", "--output", str(tmp_path / "export"))
    assert status == 0 and manifest["leaves"] >= checkpoint["size"]
    completed = subprocess.run(
        [str(Path(sys.executable).with_name("ledgergate")), "verify", str(tmp_path / "export"),
         "--public-key", vkey],
        capture_output=True, text=True, timeout=120, env={**os.environ, **store_env},
    )  # fmt: skip
    assert completed.returncode == 1, completed.stdout
    divergence = json.loads(completed.stdout.strip().splitlines()[-1])["divergence"]
    assert (divergence["kind"], divergence["position"]) == ("altered", position)
    assert f"FAILED at position {position}: altered" in completed.stderr


def test_the_signing_key_is_created_once_private_and_only_its_public_half_is_logged(
    store_env, capsys, caplog
):
    key_file = Path(store_env["LEDGERGATE_DATA_DIR"]) / "audit-signing-key.pem"
    _cli(capsys, "project", "create", "--name", "p")
    with caplog.at_level(logging.WARNING, logger="ledgergate.audit"):
        status, first = _cli(capsys, "audit", "checkpoint")
    assert status == 0 and key_file.is_file()
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "generated a new audit signing key" in messages and first["public_key"] in messages
    secret = key_file.read_text()
    body = "".join(line for line in secret.splitlines() if not line.startswith("-----"))
    assert body not in messages and "PRIVATE" not in messages
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ledgergate.audit"):
        status, second = _cli(capsys, "audit", "checkpoint")
    assert second["public_key"] == first["public_key"]
    assert "generated" not in " ".join(r.getMessage() for r in caplog.records)
    assert key_file.read_text() == secret


def test_a_configured_key_file_that_is_missing_is_an_error_not_a_new_key(
    store_env, capsys, monkeypatch, tmp_path
):
    monkeypatch.setenv("LEDGERGATE_AUDIT_SIGNING_KEY_FILE", str(tmp_path / "typo.pem"))
    status, body = _cli(capsys, "audit", "checkpoint")
    assert status == 1 and "does not exist" in body["error"]["message"]
    assert not (tmp_path / "typo.pem").exists()


def test_the_scheduled_live_check_in_serve_raises_one_alarm_per_forgery(store_env, capsys):
    from gateway.audit import AuditService
    from gateway.bootstrap import build_services
    from gateway.config import Settings

    _cli(capsys, "project", "create", "--name", "p")
    status, created = _cli(capsys, "project", "create", "--name", "q")
    _cli(
        capsys, "topup", "--project", created["project_id"], "--amount", "20",
        "--currency", "USD", "--reference", "t",
    )  # fmt: skip
    settings = Settings.from_env({**store_env, "LEDGERGATE_AUDIT_LIVE_CHECK_INTERVAL_S": "60"})
    services = build_services(settings)
    services.store.migrate()
    try:
        service = AuditService(settings.audit, services.app, services.store)
        assert service.settings.live_check_interval_s == 60
        service.merkle.catch_up()
        service.merkle.checkpoint()
        assert service.check_once().ok
        position = _forge(store_env)
        for _ in range(3):  # three scheduled runs over the same forgery
            report = service.check_once()
            assert (report.divergence.kind, report.divergence.position) == ("altered", position)
        alarms = [
            n for n in services.app.recorder.select_notifications(start=1, limit=1000)
            if n.topic.endswith("AlarmRaised")
        ]  # fmt: skip
        assert len(alarms) == 1
    finally:
        services.close()
