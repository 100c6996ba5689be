"""/v1/embeddings through the router, end to end: the real openai SDK over real HTTP to local
fake upstreams. The project's tier decides which embedding models are reachable, a named
embedding model fails over only across its own endpoints, and every outcome is audited."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import openai
import pytest

from tests.e2e.helpers import audit_rows
from tests.fakes.fixtures import started_fakes
from tests.fakes.server import FakeUpstreamBase
from tests.support.harness import Gateway, Tenant, running_gateway

INPUT_PER_MTOK = Decimal("0.10")
FEE_RATE = Decimal("0.05")
QUANTUM = Decimal("0.000000001")
EMBEDDING_MODELS = ("mistral-embed", "text-embedding-3-small")


def expected_charge(prompt_tokens: int) -> Decimal:
    cost = (Decimal(prompt_tokens) * INPUT_PER_MTOK / Decimal(1_000_000)).quantize(QUANTUM)
    return cost + (cost * FEE_RATE).quantize(QUANTUM)


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeUpstreamBase]]:
    with started_fakes(("mistral", "openai")) as started:
        yield started


@pytest.fixture(scope="module")
def gateway(
    fakes: dict[str, FakeUpstreamBase], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    env = {
        "LEDGERGATE_DATA_DIR": str(tmp_path_factory.mktemp("embeddings-routing")),
        "LEDGERGATE_OPENAI_BASE_URL": fakes["openai"].base_url,
        "LEDGERGATE_OPENAI_API_KEY": "openai-upstream-key",
        "LEDGERGATE_MISTRAL_BASE_URL": fakes["mistral"].base_url,
        # Two Mistral keys: two endpoints for mistral-embed, so it can fail over to itself.
        "LEDGERGATE_MISTRAL_API_KEYS": "mistral-key-one,mistral-key-two",
    }
    with running_gateway(
        env, [(model, str(INPUT_PER_MTOK), "0") for model in EMBEDDING_MODELS]
    ) as running:
        yield running


@pytest.fixture(autouse=True)
def clean_fakes(fakes: dict[str, FakeUpstreamBase]) -> Iterator[None]:
    for fake in fakes.values():
        fake.reset()
    yield
    for fake in fakes.values():
        fake.reset()


def pending(gateway: Gateway, tenant: Tenant) -> Decimal:
    gateway.settle()
    with gateway.client() as http:
        return Decimal(http.get("/v1/billing/balance", headers=tenant.headers()).json()["pending"])


def test_an_eu_strict_project_asking_for_a_us_embedding_model_is_refused_before_any_call(
    gateway, fakes
):
    tenant = gateway.tenant(tier="eu_strict")
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.openai(tenant).embeddings.create(model="text-embedding-3-small", input="hello")
    error = caught.value.body
    assert caught.value.status_code == 400 and error["code"] == "model_not_compliant"
    assert error["param"] == "model"
    assert "mistral-embed" in error["alternatives"]
    catalog = gateway.services.routing.catalog
    assert all(catalog.require(name).provider == "mistral" for name in error["alternatives"])
    assert fakes["openai"].received == [] and fakes["mistral"].received == []
    [record] = audit_rows(gateway, tenant)
    assert record["status"] == "rejected" and record["endpoint"] == "embeddings"
    assert pending(gateway, tenant) == 0  # nothing reserved for a refused request


def test_a_request_can_tighten_an_unrestricted_project_to_eu_for_embeddings(gateway, fakes):
    tenant = gateway.tenant()
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.openai(tenant).embeddings.create(
            model="text-embedding-3-small",
            input="hello",
            extra_body={"routing_preferences": {"compliance": "eu_cloud"}},
        )
    assert caught.value.body["code"] == "model_not_compliant"
    assert fakes["openai"].received == []


def test_mistral_embed_serves_an_eu_strict_project_with_route_headers_and_an_exact_charge(
    gateway, fakes
):
    tenant = gateway.tenant(tier="eu_strict")
    fakes["mistral"].script(prompt_tokens=2500)
    # Inputs long enough that 2,500 reported tokens are plausible (domain/usage.py: more
    # than twice the offline estimate plus a slack would be an upstream error, capped).
    raw = gateway.openai(tenant).embeddings.with_raw_response.create(
        model="mistral-embed", input=["bonjour " * 400, "hej"], encoding_format="float"
    )
    result = raw.parse()
    assert len(result.data) == 2 and result.model == "mistral-embed"
    assert raw.headers["x-lg-model"] == "mistral-embed"
    assert raw.headers["x-lg-provider"] == "mistral"
    assert raw.headers["x-lg-endpoint"].startswith("mistral:")
    assert "tier=eu_strict" in raw.headers["x-lg-route-reason"]
    assert raw.headers["x-lg-key-source"] == "managed"
    assert Decimal(raw.headers["x-lg-actual-cost"]) == expected_charge(2500)
    [record] = audit_rows(gateway, tenant)
    assert record["status"] == "completed" and record["endpoint"] == "embeddings"
    assert record["input_tokens"] == 2500
    assert Decimal(record["cost"]) == expected_charge(2500)
    assert fakes["openai"].received == []


def test_an_unknown_embedding_model_is_a_404_model_not_found(gateway):
    tenant = gateway.tenant()
    with pytest.raises(openai.NotFoundError) as caught:
        gateway.openai(tenant).embeddings.create(model="text-embedding-9", input="x")
    assert caught.value.body["code"] == "model_not_found"
    [record] = audit_rows(gateway, tenant)
    assert record["status"] == "rejected"


def test_a_failing_endpoint_fails_over_to_the_same_models_other_endpoint(gateway, fakes):
    tenant = gateway.tenant(tier="eu_strict")
    # The first endpoint tried answers 503; the other key's endpoint answers.
    fakes["mistral"].script(error_status=503)
    fakes["mistral"].script(prompt_tokens=40)
    raw = gateway.openai(tenant).embeddings.with_raw_response.create(
        model="mistral-embed", input="hello"
    )
    assert raw.headers["x-lg-model"] == "mistral-embed"
    assert raw.headers["x-lg-route-reason"].startswith("failover from mistral-embed@mistral:")
    keys = [request.headers.get("authorization") for request in fakes["mistral"].received]
    assert keys[0] != keys[1] and len(keys) == 2  # two endpoints, one attempt each
    [record] = audit_rows(gateway, tenant)
    assert record["status"] == "completed" and Decimal(record["cost"]) == expected_charge(40)


def test_a_named_embedding_model_never_fails_over_to_another_model(gateway, fakes):
    tenant = gateway.tenant()
    fakes["openai"].script(error_status=503)
    with pytest.raises(openai.InternalServerError) as caught:
        gateway.openai(tenant).embeddings.create(model="text-embedding-3-small", input="hello")
    assert caught.value.status_code == 503
    assert fakes["mistral"].received == []  # mistral-embed was compliant, but not named
    [record] = audit_rows(gateway, tenant)
    assert record["status"] == "failed" and record["http_status"] == 503
