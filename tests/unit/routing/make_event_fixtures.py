"""Writes one stored-JSON fixture per routing event class into tests/fixtures/events/ (the
shared fixture folder). Run only when a routing event class gains a new version (a released
fixture is never rewritten):

    .venv/bin/python -m tests.unit.routing.make_event_fixtures
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from domain import commands as c
from domain.ids import new_request_id
from domain.routing import EndpointBreaker, ProjectRouting
from domain.routing_handlers import (
    AddCustomEndpoint,
    AddCustomModel,
    RecordBreakerTransition,
    RemoveCustomModel,
)
from domain.writer import run_now
from tests.support.make_event_fixtures import FIXTURE_NOW, OUT, fixture_ledger, write_new_fixtures

ROUTING_TOPICS = ("domain.routing:", "domain.request:Request.RouteDecided",
                  "domain.request:Request.Repriced", "domain.request:Request.DocumentsProcessed")  # fmt: skip

CUSTOM_MODEL = {
    "name": "fixture-model",
    "provider": "mistral",
    "upstream_id": "ft:mistral-small:fixture",
    "capabilities": ["chat"],
    "size_class": "small",
    "regions": ["eu"],
    "tiers": ["eu_strict", "eu_cloud", "unrestricted"],
    "prices": [
        {"effective_from": "2026-01-01T00:00:00Z", "currency": "EUR",
         "input_per_million": "0.2", "output_per_million": "0.6"}
    ],
}  # fmt: skip


def main() -> None:
    with fixture_ledger() as (app, project_id):
        now = FIXTURE_NOW
        run_now(
            app, c.TopUp(project_id=project_id, amount=Decimal(10), currency="EUR", reference="r")
        )
        for model in ("a", "b"):
            run_now(app, c.SetPrice(model=model, input_per_mtok=Decimal(1), output_per_mtok=Decimal(2),
                                    currency="EUR", effective_from=now - timedelta(days=1)))  # fmt: skip
        facts = c.RequestFacts(new_request_id(), "chat.completions", project_id, None, "u", "a",
                               False, 1, 3, "ab" * 32, None, None, None, now,
                               now + timedelta(minutes=10))  # fmt: skip
        decision = {
            "requested_model": "auto", "mode": "auto", "variant": "smart", "tier": "eu_strict",
            "model": "a", "provider": "mistral", "upstream_model": "a", "endpoint": "mistral:default",
            "failover": ("b@mistral:default",), "reason": "auto tier=eu_strict thompson a 0.7 > b 0.6 of 2",
            "confidence": "0.7000", "candidates": (("a", "0.700000", "p=0.99"), ("b", "0.600000", "p=0.98")),
        }  # fmt: skip
        run_now(app, c.AdmitRequest(facts=facts, route=c.Route("a", "mistral", "a"),
                                    estimated_input_tokens=10, max_output_tokens=10,
                                    fee_rate=Decimal("0.05"), price_at=now, route_decision=decision,
                                    ocr_estimate={"cost": Decimal("0.002"), "currency": "EUR"}))  # fmt: skip
        run_now(app, c.RecordDocuments(facts.request_id, 1, 2, "mistral-ocr", Decimal("0.001"), "EUR",
                                       now - timedelta(days=30)))  # fmt: skip
        run_now(app, c.Redispatch(facts.request_id, c.Route("b", "mistral", "b"), 2))
        run_now(app, AddCustomModel(project_id, CUSTOM_MODEL))
        run_now(app, AddCustomEndpoint(project_id, "mistral", "fixture", "https://mistral.test"))
        run_now(app, RemoveCustomModel(project_id, "fixture-model"))
        routing = app.repository.get(ProjectRouting.create_id(str(project_id)))
        routing.remove_endpoint("mistral", "fixture", removed_by="admin")
        app.save(routing)
        for state in ("open", "half_open", "closed"):
            run_now(app, RecordBreakerTransition("mistral:default", state, "fixture", now, 5, 8, 5,
                                                 Decimal(30), 2))  # fmt: skip
        assert app.repository.get(EndpointBreaker.create_id("mistral:default")).state == "closed"
        written = write_new_fixtures(app, OUT, ROUTING_TOPICS)
    print(f"wrote {len(written)} new routing fixtures to {OUT}: {', '.join(written) or '-'}")


if __name__ == "__main__":
    main()
