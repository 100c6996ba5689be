"""The Free plan is unrestricted-tier only, and that one rule (domain/plans.check_plan_allows_tier)
answers one code and one status whichever path reaches it: a request's routing preference, a
request's model shorthand, the admin HTTP API creating a project, and the admin CLI creating
a project, changing its tier or downgrading its plan. (Before, the admin paths answered
400 invalid_request and the request paths 403 compliance_tier_not_in_plan.)"""

from __future__ import annotations

import json
import os
from typing import Any

import openai
import pytest

from domain import commands as c
from domain.errors import ComplianceTierNotInPlan
from gateway.cli import main
from gateway.errors import ERRORS
from tests.support.harness import ADMIN_TOKEN, Gateway

CODE = "compliance_tier_not_in_plan"
MESSAGES = [{"role": "user", "content": "Keep my data in the EU"}]


def test_the_one_code_is_a_403_permission_error_in_the_status_table() -> None:
    assert ComplianceTierNotInPlan.code == CODE
    assert (ERRORS[CODE].status, ERRORS[CODE].error_type) == (403, "permission_error")


def test_every_http_path_to_the_free_plan_tier_rule_answers_403_compliance_tier_not_in_plan(
    sqlite_gateway: Gateway,
) -> None:
    gateway = sqlite_gateway
    free = gateway.tenant(plan="free")
    client = gateway.openai(free)

    # A request's routing preference asks for an EU tier.
    with pytest.raises(openai.PermissionDeniedError) as preference:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            extra_body={"routing_preferences": {"compliance": "eu_cloud"}},
        )
    assert preference.value.status_code == 403
    assert preference.value.body["code"] == CODE

    # A request's model shorthand asks for an EU tier.
    with pytest.raises(openai.PermissionDeniedError) as shorthand:
        client.chat.completions.create(model="eu-strict:small:fast", messages=MESSAGES)
    assert shorthand.value.status_code == 403
    assert shorthand.value.body["code"] == CODE

    # The admin HTTP API creates a Free project in an EU tier.
    with gateway.client() as http:
        created = http.post(
            "/v1/admin/projects",
            json={"name": "acme", "plan": "free", "tier": "eu_sweden"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
    assert created.status_code == 403, created.text
    assert created.json()["error"]["code"] == CODE
    assert created.json()["error"]["type"] == "permission_error"

    # The admin commands the gateway runs (the CLI and the admin API build these).
    with pytest.raises(ComplianceTierNotInPlan):
        gateway.execute(c.SetTier(project_id=free.project_id, tier="eu_cloud"))
    eu = gateway.tenant(plan="pro", tier="eu_cloud")
    with pytest.raises(ComplianceTierNotInPlan):
        gateway.execute(c.SetPlan(project_id=eu.project_id, plan="free"))


def _run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(list(argv))
    lines = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(lines[-1])


def test_every_cli_path_to_the_free_plan_tier_rule_answers_compliance_tier_not_in_plan(
    sqlite_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in list(os.environ):
        if name.startswith("LEDGERGATE_"):
            monkeypatch.delenv(name)
    for name, value in {**sqlite_env, "LEDGERGATE_PII_WARM_AT_START": "0"}.items():
        monkeypatch.setenv(name, value)

    code, refused = _run_cli(
        capsys, "project", "create", "--name", "a", "--plan", "free", "--tier", "eu_cloud"
    )
    assert code != 0 and refused["error"]["code"] == CODE

    code, free = _run_cli(capsys, "project", "create", "--name", "b", "--plan", "free")
    assert code == 0, free
    code, refused = _run_cli(
        capsys, "project", "set-tier", "--project", free["project_id"], "--tier", "eu_strict"
    )
    assert code != 0 and refused["error"]["code"] == CODE

    code, eu = _run_cli(
        capsys, "project", "create", "--name", "c", "--plan", "pro", "--tier", "eu_cloud"
    )
    assert code == 0, eu
    code, refused = _run_cli(
        capsys, "project", "set-plan", "--project", eu["project_id"], "--plan", "free"
    )
    assert code != 0 and refused["error"]["code"] == CODE
