"""Finance end to end: real chat traffic through the gateway (real openai SDK, real HTTP,
simulated upstream) lands in the ledger-entries view, reconciles against an invoice, is
recorded, and is read back from GET /v1/billing/reconciliations — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from reconciliation.invoices import read_invoice
from reconciliation.reconcile import reconcile
from reconciliation.recording import record_command
from reconciliation.sources import entries_for_reconcile
from tests.support.harness import ADMIN_TOKEN, Gateway

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_chat_charges_reconcile_and_the_record_is_served_to_finance(gateway: Gateway) -> None:
    tenant = gateway.tenant(balance="10.00")
    client = gateway.openai(tenant)
    for _ in range(3):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
        )
    gateway.settle()

    today = datetime.now(UTC).date()
    month = today.strftime("%Y-%m")
    entries, _ = entries_for_reconcile(gateway.services.store, "openai", month)
    charges = entries.collect()
    assert charges.height == 3
    ledger_cost = sum(charges["provider_cost"].to_list(), Decimal(0))
    invoice = read_invoice(
        (
            "date,provider,model,input_tokens,output_tokens,cost,currency\n"
            f"{today},openai,gpt-4o-mini,,,{ledger_cost + Decimal('0.25')},USD\n"
        ).encode(),
        source_name="openai-invoice.csv",
    )
    report = reconcile(entries, invoice, "openai", month)
    assert [line.status for line in report.lines] == ["under"]
    recorded = gateway.execute(record_command(report))
    gateway.settle()

    with gateway.client() as http:
        listed = http.get(
            "/v1/billing/reconciliations", params={"provider": "openai"}, headers=ADMIN
        )
        detail = http.get(
            f"/v1/billing/reconciliations/{recorded['reconciliation_id']}", headers=ADMIN
        )
        as_tenant = http.get("/v1/billing/reconciliations", headers=tenant.headers())
        bad_month = http.get("/v1/billing/reconciliations?month=2026-13", headers=ADMIN)
        missing = http.get(
            "/v1/billing/reconciliations/00000000-0000-0000-0000-000000000000", headers=ADMIN
        )
    assert listed.status_code == 200
    body = listed.json()
    assert body["as_of_position"] > 0 and len(body["data"]) == 1
    record = body["data"][0]
    assert record["id"] == recorded["reconciliation_id"]
    assert (record["status"], record["difference"]) == ("under", "-0.250000000")
    assert Decimal(record["ledger_cost"]) == ledger_cost
    assert "lines" not in record
    assert detail.status_code == 200
    assert detail.json()["lines"][0]["model"] == "gpt-4o-mini"
    assert detail.headers["x-request-id"].startswith("lg_req_")
    assert as_tenant.status_code in (401, 403)
    assert as_tenant.json()["error"]["code"] == "invalid_admin_token"
    assert bad_month.status_code == 400 and bad_month.json()["error"]["param"] == "month"
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "reconciliation_not_found"
