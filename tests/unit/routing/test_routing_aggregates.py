from __future__ import annotations

from typing import Any

import pytest
from eventsourcing.application import Application

from domain.catalog import Catalog
from domain.errors import InvalidCommand
from domain.routing import EndpointBreaker, ProjectRouting
from domain.tiers import Tier


def custom_model(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "acme-mistral-ft",
        "aliases": ["acme-ft"],
        "provider": "mistral",
        "upstream_id": "ft:mistral-small:acme:1234",
        "capabilities": ["chat", "tools"],
        "size_class": "small",
        "regions": ["eu"],
        "tiers": ["eu_strict", "eu_cloud", "unrestricted"],
        "quality": "0.74",
        "latency_ms_typical": 650,
        "prices": [
            {
                "effective_from": "2026-06-01T00:00:00Z",
                "currency": "EUR",
                "input_per_million": "0.20",
                "output_per_million": "0.60",
            }
        ],
    }
    entry.update(overrides)
    return entry


def embedded_app() -> Application:
    return Application(
        env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": ":memory:"}
    )


def test_a_custom_model_survives_a_save_and_replay_from_the_event_store() -> None:
    app = embedded_app()
    routing = ProjectRouting("proj_1")
    routing.add_custom_model(custom_model(), added_by="admin@acme")
    app.save(routing)
    replayed = app.repository.get(ProjectRouting.create_id("proj_1"))
    assert isinstance(replayed, ProjectRouting)
    (spec,) = replayed.custom_models()
    assert spec.name == "acme-mistral-ft" and spec.aliases == ("acme-ft",)
    assert spec.tiers == {Tier.EU_STRICT, Tier.EU_CLOUD, Tier.UNRESTRICTED}
    assert spec.source == "custom:proj_1"
    catalog = Catalog.shipped().with_models(*replayed.custom_models())
    assert catalog.require("acme-ft") is not None


def test_the_project_routing_id_is_derived_from_the_project_so_a_retry_is_not_a_second_aggregate() -> (
    None
):
    assert ProjectRouting("proj_1").id == ProjectRouting.create_id("proj_1")


def test_a_custom_model_claiming_a_tier_it_cannot_meet_is_refused_and_records_nothing() -> None:
    routing = ProjectRouting("proj_1")
    with pytest.raises(InvalidCommand):
        routing.add_custom_model(custom_model(provider="openai"), added_by="admin")
    assert [type(e).__name__ for e in routing.collect_events()] == ["Started"]


def test_a_custom_model_may_not_reuse_a_shipped_name() -> None:
    with pytest.raises(InvalidCommand):
        ProjectRouting("p").add_custom_model(custom_model(name="gpt-5"), added_by="admin")


def test_a_removed_custom_model_is_gone_after_replay() -> None:
    app = embedded_app()
    routing = ProjectRouting("p")
    routing.add_custom_model(custom_model(), added_by="admin")
    routing.remove_custom_model("acme-mistral-ft", removed_by="admin")
    app.save(routing)
    assert app.repository.get(routing.id).custom_models() == ()


def test_an_endpoint_stores_a_reference_to_the_projects_stored_key_never_the_key() -> None:
    app = embedded_app()
    routing = ProjectRouting("p")
    routing.add_endpoint(
        provider="bedrock", name="stockholm-2", base_url="https://bedrock-runtime.eu-north-1.amazonaws.com",
        region="eu-north-1", api_key_ref="byok:bedrock", models=["nova-lite-sweden"], added_by="admin",
    )  # fmt: skip
    app.save(routing)
    (endpoint,) = app.repository.get(routing.id).endpoints()
    assert endpoint["api_key_ref"] == "byok:bedrock"
    assert endpoint["models"] == ("nova-lite-sweden",)


@pytest.mark.parametrize(
    "overrides",
    [
        {"api_key_ref": "sk-live-abc123"},  # looks like a key, not a reference
        # The server's own secrets, named as environment variables (issue 9, item 9):
        {"api_key_ref": "LEDGERGATE_SECRET_KEY"},
        {"api_key_ref": "LEDGERGATE_ADMIN_TOKEN"},
        {"api_key_ref": "LEDGERGATE_OPENAI_API_KEY"},
        {"api_key_ref": "ACME_OPENAI_KEY"},
        {"api_key_ref": "byok:anthropic"},  # another provider's key on an OpenAI endpoint
        {"base_url": "https://user:secret@api.openai.com"},
        {"base_url": "ftp://x"},
        {"provider": "skynet"},
        {"name": "Has Spaces"},
    ],
)
def test_an_endpoint_that_would_leak_a_secret_or_is_malformed_is_refused(
    overrides: dict[str, str],
) -> None:
    arguments = {
        "provider": "openai",
        "name": "k2",
        "base_url": "https://api.openai.com/v1",
        "api_key_ref": "byok:openai",
    }
    arguments.update(overrides)
    with pytest.raises(InvalidCommand):
        ProjectRouting("p").add_endpoint(added_by="admin", **arguments)


def test_breaker_history_survives_a_replay() -> None:
    from datetime import UTC, datetime
    from decimal import Decimal

    app = embedded_app()
    breaker = EndpointBreaker("mistral:default")
    moment = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
    breaker.open(reason="5 consecutive failures", failures_in_window=5, requests_in_window=7,
                 consecutive_failures=5, cooldown_s=Decimal("30"), observed_at=moment)  # fmt: skip
    breaker.half_open(reason="cooldown elapsed", observed_at=moment)
    app.save(breaker)
    replayed = app.repository.get(EndpointBreaker.create_id("mistral:default"))
    assert replayed.state == "half_open" and replayed.times_opened == 1
