"""Admin commands of issue 9's smaller items through the real CLI and store, on SQLite and the
real PostgreSQL: `fx import` of the ECB files (idempotent, with the file's date as source),
`price set` refusing unknown models, strict projects needing the actor-token secret, and
catalog seeding by two processes starting at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from domain.application import open_application
from domain.pricing import FxBook, PriceBook
from gateway.cli import main
from projections.db import ReadStore

ECB = Path(__file__).resolve().parents[1] / "fixtures" / "ecb"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli_env(backend: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in list(os.environ):
        if name.startswith("LEDGERGATE_"):
            monkeypatch.delenv(name)
    for name, value in backend.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LEDGERGATE_PII_WARM_AT_START", "0")
    return backend


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(list(argv))
    out = capsys.readouterr()
    text = out.out.strip() or out.err.strip()
    try:
        return code, json.loads(text.splitlines()[-1] if text else "{}")
    except json.JSONDecodeError:
        return code, text


def stored_events(env: dict[str, str], kind: type) -> list[Any]:
    app = open_application(env.get("LEDGERGATE_DATABASE_URL"), env["LEDGERGATE_DATA_DIR"])
    try:
        found = []
        for notification in app.recorder.select_notifications(start=1, limit=100_000):
            event = app.mapper.to_domain_event(notification)
            if isinstance(event, kind):
                found.append(event)
        return found
    finally:
        app.close()


def test_fx_import_records_the_ecb_rates_once_with_the_files_date_as_source(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, first = run_cli(capsys, "fx", "import", str(ECB / "eurofxref-hist.csv"))
    assert code == 0 and first["recorded"] == 9, first
    code, again = run_cli(capsys, "fx", "import", str(ECB / "eurofxref-hist.csv"))
    assert code == 0 and again["recorded"] == 0 and again["already_recorded"] == 9
    code, daily = run_cli(capsys, "fx", "import", str(ECB / "eurofxref.csv"))
    assert code == 0 and daily["recorded"] == 0  # the same day, already in the history
    rates = stored_events(cli_env, FxBook.RateSet)
    assert len(rates) == 9
    assert {rate.source for rate in rates} == {
        "ecb:1999-01-04", "ecb:2026-11-26", "ecb:2026-11-27",
        "ecb-cross:1999-01-04", "ecb-cross:2026-11-26", "ecb-cross:2026-11-27",
    }  # fmt: skip
    code, refused = run_cli(capsys, "fx", "import", str(ROOT / "README.md"))
    assert code != 0 and "not an ECB reference-rate CSV" in refused["error"]["message"]


def test_price_set_refuses_a_model_outside_the_catalog_with_close_names(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, refused = run_cli(
        capsys, "price", "set", "--model", "gpt-4o-mni", "--input-per-mtok", "1",
        "--output-per-mtok", "2", "--effective-from", "2026-01-01T00:00:00Z",
    )  # fmt: skip
    assert code != 0 and "gpt-4o-mini" in refused["error"]["message"]
    code, accepted = run_cli(
        capsys, "price", "set", "--model", "gpt-4o-mini", "--input-per-mtok", "1",
        "--output-per-mtok", "2", "--effective-from", "2026-01-01T00:00:00Z",
    )  # fmt: skip
    assert code == 0 and accepted["source"] == "operator"
    assert [event.source for event in stored_events(cli_env, PriceBook.PriceSet)] == ["operator"]


def test_a_strict_project_is_refused_without_the_actor_token_secret(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, refused = run_cli(capsys, "project", "create", "--name", "acme", "--strict")
    assert code != 0 and "LEDGERGATE_ACTOR_TOKEN_SECRET" in refused["error"]["message"]
    assert stored_events(cli_env, object) == []  # nothing was recorded
    monkeypatch.setenv("LEDGERGATE_ACTOR_TOKEN_SECRET", "a-secret")
    code, created = run_cli(capsys, "project", "create", "--name", "acme", "--strict")
    assert code == 0 and created["project_id"]


SEED_SCRIPT = """
import sys, time
from gateway.bootstrap import build_services
start_at = float(sys.argv[1])
services = build_services()
time.sleep(max(0.0, start_at - time.time()))  # both processes start seeding at once
services.start()
services.close()
"""


def test_two_processes_starting_at_once_seed_each_catalog_price_once(
    postgres_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LEDGERGATE_")},
        **postgres_env,
        "LEDGERGATE_DATA_DIR": str(tmp_path),
        "LEDGERGATE_RUN_SWEEPER": "0",
        "LEDGERGATE_PII_WARM_AT_START": "0",
    }
    # The tables exist first (as after any earlier start), so the race is the seeding's.
    open_application(env["LEDGERGATE_DATABASE_URL"], str(tmp_path)).close()
    ReadStore(env["LEDGERGATE_DATABASE_URL"], str(tmp_path)).migrate()
    start_at = str(time.time() + 6.0)
    processes = [
        subprocess.Popen([sys.executable, "-c", SEED_SCRIPT, start_at], env=env, cwd=ROOT)
        for _ in range(2)
    ]
    for process in processes:
        assert process.wait(timeout=120) == 0
    prices = stored_events({**env}, PriceBook.PriceSet)
    keys = [(str(event.originator_id), event.effective_from) for event in prices]
    assert prices and len(keys) == len(set(keys))  # one row per (model, effective_from)
    assert {event.source for event in prices} == {"catalog"}
    assert len(stored_events({**env}, PriceBook.Opened)) == len({key[0] for key in keys})


def test_topup_test_fills_the_separate_test_balance_and_leaves_the_live_one(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from domain.account import Account

    code, project = run_cli(capsys, "project", "create", "--name", "acme")
    assert code == 0
    pid = project["project_id"]
    code, test = run_cli(capsys, "topup", "--project", pid, "--amount", "2", "--currency",
                         "USD", "--reference", "t", "--test")  # fmt: skip
    assert code == 0 and test["mode"] == "test" and Decimal(test["credits"]) == 2
    code, live = run_cli(capsys, "topup", "--project", pid, "--amount", "5", "--currency",
                         "USD", "--reference", "l")  # fmt: skip
    assert code == 0 and live["mode"] == "live" and Decimal(live["credits"]) == 5
    opened = stored_events(cli_env, Account.Opened)
    assert sorted(event.mode for event in opened) == ["live", "test"]
