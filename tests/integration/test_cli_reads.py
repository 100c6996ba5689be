"""The CLI's read commands through main(): `project list|show`, `key list`, `price list`,
`fx list`, `model list`, `audit show`, as tables for people and as JSON for scripts."""

from __future__ import annotations

import io
import json
from decimal import Decimal as D
from typing import Any

import pytest

from domain.catalog import Catalog
from gateway.cli import main
from gateway.progress import progress_bar


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    status, out, _ = run(capsys, *argv, "--json")
    return status, json.loads(out)


@pytest.fixture
def seeded(
    backend: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> dict[str, Any]:
    for name, value in backend.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LEDGERGATE_LOG_FORMAT", "json")

    def admin(*argv: str) -> dict[str, Any]:
        status, out, _ = run(capsys, *argv)
        assert status == 0, out
        return json.loads(out)  # type: ignore[no-any-return]

    project = admin("project", "create", "--name", "acme", "--currency", "EUR")["project_id"]
    other = admin("project", "create", "--name", "globex")["project_id"]
    key = admin("key", "create", "--project", project, "--daily-budget", "5")
    admin("key", "create", "--project", other)
    admin("key", "revoke", "--key", key["key_id"])
    admin("topup", "--project", project, "--amount", "12.50", "--currency", "EUR",
          "--reference", "r1")  # fmt: skip
    for effective, price in (("2026-01-01T00:00:00Z", "0.15"), ("2026-06-01T00:00:00Z", "0.20")):
        admin("price", "set", "--model", "gpt-4o-mini", "--input-per-mtok", price,
              "--output-per-mtok", "0.60", "--effective-from", effective)  # fmt: skip
    admin("price", "set", "--model", "mistral-small", "--input-per-mtok", "0.1",
          "--output-per-mtok", "0.3", "--currency", "EUR", "--effective-from",
          "2026-01-01T00:00:00Z")  # fmt: skip
    admin("fx", "set", "--base", "EUR", "--quote", "USD", "--rate", "1.08",
          "--effective-from", "2026-01-01T00:00:00Z")  # fmt: skip
    admin("fx", "set", "--base", "EUR", "--quote", "USD", "--rate", "1.10",
          "--effective-from", "2026-07-01T00:00:00Z")  # fmt: skip
    return {"project": project, "other": other, "key": key}


def test_project_and_key_lists_show_ids_and_prefixes_never_a_key(seeded, capsys):  # type: ignore[no-untyped-def]
    status, projects = run_json(capsys, "project", "list")
    assert status == 0
    by_id = {p["project_id"]: p for p in projects["data"]}
    assert set(by_id) == {seeded["project"], seeded["other"]}
    acme = by_id[seeded["project"]]
    assert (acme["name"], acme["currency"], acme["available"]) == ("acme", "EUR", "12.500000000")

    status, keys = run_json(capsys, "key", "list")
    assert status == 0 and len(keys["data"]) == 2
    mine = next(k for k in keys["data"] if k["key_id"] == seeded["key"]["key_id"])
    assert mine["revoked"] is True and mine["daily_budget"] == "5"
    assert seeded["key"]["api_key"].startswith(mine["prefix"])
    status, only = run_json(capsys, "key", "list", "--project", seeded["other"])
    assert [k["project_id"] for k in only["data"]] == [seeded["other"]]

    status, shown = run_json(capsys, "project", "show", seeded["project"])
    assert status == 0
    assert shown["name"] == "acme" and shown["balance"]["credits"] == "12.500000000"
    assert [k["key_id"] for k in shown["keys"]] == [seeded["key"]["key_id"]]

    # The whole key appears nowhere, in tables or JSON.
    for argv in (("project", "list"), ("key", "list"), ("project", "show", seeded["project"])):
        _, table, _ = run(capsys, *argv)
        assert seeded["key"]["api_key"] not in table
        assert seeded["key"]["key_id"] in table or "acme" in table
    _, table, _ = run(capsys, "project", "list")
    assert "acme" in table and "globex" in table and seeded["project"] in table


def test_price_and_fx_lists_give_the_history_or_what_was_in_effect(seeded, capsys):  # type: ignore[no-untyped-def]
    status, history = run_json(capsys, "price", "list", "--model", "gpt-4o-mini")
    assert status == 0
    assert [D(p["input_per_mtok"]) for p in history["data"]] == [D("0.15"), D("0.20")]
    status, march = run_json(capsys, "price", "list", "--at", "2026-03-01T00:00:00Z")
    in_effect = {p["model"]: D(p["input_per_mtok"]) for p in march["data"]}
    assert in_effect == {"gpt-4o-mini": D("0.15"), "mistral-small": D("0.1")}
    status, august = run_json(
        capsys, "price", "list", "--model", "gpt-4o-mini", "--at", "2026-08-01T00:00:00Z"
    )
    assert [D(p["input_per_mtok"]) for p in august["data"]] == [D("0.20")]

    status, rates = run_json(capsys, "fx", "list")
    assert [D(r["rate"]) for r in rates["data"]] == [D("1.08"), D("1.10")]
    status, rates = run_json(capsys, "fx", "list", "--at", "2026-03-01T00:00:00Z")
    assert [(r["base"], r["quote"], D(r["rate"])) for r in rates["data"]] == [
        ("EUR", "USD", D("1.08"))
    ]

    _, table, _ = run(capsys, "price", "list", "--at", "2026-03-01T00:00:00Z")
    assert "gpt-4o-mini" in table and "0.15" in table and "0.20" not in table
    _, table, _ = run(capsys, "fx", "list")
    assert "EUR" in table and "1.1" in table


def test_model_list_is_the_catalog_with_a_projects_custom_models(seeded, capsys):  # type: ignore[no-untyped-def]
    status, models = run_json(capsys, "model", "list")
    assert status == 0
    assert [m["model"] for m in models["data"]] == list(Catalog.shipped().names())
    _, table, _ = run(capsys, "model", "list")
    assert "gpt-4o-mini" in table and "mistral" in table


def test_audit_show_prints_a_requests_record_or_a_json_error(sqlite_gateway, capsys, monkeypatch):  # type: ignore[no-untyped-def]
    for name, value in sqlite_gateway.settings.raw.items():
        monkeypatch.setenv(name, value)
    tenant = sqlite_gateway.tenant()
    raw = sqlite_gateway.openai(tenant).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
    )
    request_id = raw.headers["x-request-id"]
    status, record = run_json(capsys, "audit", "show", request_id)
    assert status == 0
    assert record["request_id"] == request_id and record["status"] == "completed"
    assert record["model"] == "gpt-4o-mini" and record["pricing"]["price_event_id"]
    _, table, _ = run(capsys, "audit", "show", request_id)
    assert request_id in table and "completed" in table and "pricing.price_id" in table
    status, out, _ = run(capsys, "audit", "show", "lg_req_000000")
    assert status == 1 and json.loads(out)["error"]["code"] == "request_not_found"


def test_the_progress_helper_writes_one_summary_line_when_not_on_a_terminal() -> None:
    stream = io.StringIO()
    with progress_bar("replaying", stream=stream) as advance:
        for done in range(0, 1001, 250):
            advance(done, 1000)
    assert stream.getvalue().strip() == "replaying: 1,000 / 1,000 done"
    quiet = io.StringIO()
    with progress_bar("nothing", stream=quiet):
        pass
    assert quiet.getvalue() == ""
