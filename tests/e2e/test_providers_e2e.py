"""All eight providers through the gateway with the real openai Python SDK: each provider's
fake upstream speaks its native wire format; the client only ever sees OpenAI's.

Per provider: a reply, a stream with usage, tool calls (streamed and not), an error before
the first chunk (real status, OpenAI envelope), an error after it (SSE error frame), usage
and charge to the token, and every outcome in the audit log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from domain.tiers import Tier
from tests.e2e.helpers import audit_record, audit_rows
from tests.fakes.fixtures import ALL_PROVIDERS, started_fakes
from tests.fakes.server import FakeUpstreamBase, ToolCall
from tests.support.harness import Gateway, Tenant, running_gateway

# Catalog names (the router resolves `model` only through the catalog); Mistral's is an alias
# on purpose: it resolves to `mistral-small`, and is priced and charged under that name.
MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-sonnet",
    "mistral": "mistral-small-latest",
    "google": "gemini-flash",
    "bedrock": "claude-sonnet-eu",  # region-pinned to eu-central-1: see LEDGERGATE_BEDROCK_REGIONS
    "cohere": "command-a",
    "moonshot": "kimi-k2-6",
    "xai": "grok-4-3",
}
EMBEDDING_MODELS = {
    "openai": "text-embedding-3-small",
    "mistral": "mistral-embed",
    "google": "gemini-embedding-001",
    "bedrock": "titan-embed-v2-sweden",  # region-pinned to eu-north-1
    "cohere": "cohere-embed",
}
INPUT_PER_MTOK = Decimal("2.00")
OUTPUT_PER_MTOK = Decimal("8.00")
FEE_RATE = Decimal("0.05")
QUANTUM = Decimal("0.000000001")
MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def expected_charge(prompt_tokens: int, completion_tokens: int) -> Decimal:
    provider_cost = (
        (Decimal(prompt_tokens) * INPUT_PER_MTOK + Decimal(completion_tokens) * OUTPUT_PER_MTOK)
        / Decimal(1_000_000)
    ).quantize(QUANTUM)
    return provider_cost + (provider_cost * FEE_RATE).quantize(QUANTUM)


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeUpstreamBase]]:
    with started_fakes(ALL_PROVIDERS) as started:
        yield started


@pytest.fixture(scope="module")
def gateway(
    fakes: dict[str, FakeUpstreamBase], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    env = {
        "LEDGERGATE_DATA_DIR": str(tmp_path_factory.mktemp("providers-e2e")),
        # One Bedrock endpoint per region: the catalog's Bedrock models are region-pinned
        # (Claude via Frankfurt, Titan embeddings in Stockholm) and are not routable without
        # an endpoint in their region.
        "LEDGERGATE_BEDROCK_REGIONS": "eu-central-1,eu-north-1",
    }
    for provider, fake in fakes.items():
        env[f"LEDGERGATE_{provider.upper()}_BASE_URL"] = fake.base_url
        env[f"LEDGERGATE_{provider.upper()}_API_KEY"] = f"{provider}-upstream-key"
    with running_gateway(env, prices=()) as running:
        catalog = running.services.routing.catalog
        for model in [*MODELS.values(), *EMBEDDING_MODELS.values()]:
            # Prices are kept under the catalog model's canonical name: an alias
            # (mistral-small-latest) is charged at the price of the model it resolves to.
            running.set_price(
                catalog.require(model).name, str(INPUT_PER_MTOK), str(OUTPUT_PER_MTOK)
            )
        yield running


@pytest.fixture(autouse=True)
def closed_breakers(gateway: Gateway) -> None:
    """Each test starts with every endpoint's breaker closed and its history empty: the tests
    here fail requests on purpose (malformed streams, each error status), and on the one
    module-wide gateway five of them in a row for one provider would open its breaker for
    whichever test of that provider runs next; the outcome must not hang on test order."""
    gateway.services.routing.board.reset("test isolation: a new test")


@pytest.fixture
def fake(
    request: pytest.FixtureRequest, fakes: dict[str, FakeUpstreamBase]
) -> Iterator[FakeUpstreamBase]:
    upstream = fakes[request.node.callspec.params["provider"]]
    upstream.reset()
    yield upstream
    upstream.reset()


@pytest.fixture
def tenant(gateway: Gateway) -> Tenant:
    return gateway.tenant(balance="10.00")


def only_audit_record(gateway: Gateway, tenant: Tenant) -> dict[str, Any]:
    [record] = audit_rows(gateway, tenant)
    return record


providers = pytest.mark.parametrize("provider", ALL_PROVIDERS)


@providers
def test_a_reply_is_an_openai_completion_charged_to_the_token(provider, fake, gateway, tenant):
    fake.script(text="Sunny, 21°C.", prompt_tokens=234, completion_tokens=56)
    raw = gateway.openai(tenant).chat.completions.with_raw_response.create(
        model=MODELS[provider], messages=MESSAGES
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Sunny, 21°C."
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (234, 56)
    assert raw.headers["x-lg-provider"] == provider
    spec = gateway.services.routing.catalog.require(MODELS[provider])
    assert raw.headers["x-lg-model"] == spec.name  # an alias is reported by its canonical name
    if provider == "bedrock":  # region-pinned: served only by the Frankfurt endpoint
        assert raw.headers["x-lg-endpoint"] == "bedrock:eu-central-1"
    charge = expected_charge(234, 56)
    assert Decimal(raw.headers["x-lg-actual-cost"]) == charge
    record = audit_record(gateway, tenant, raw.headers["x-request-id"])
    assert record["status"] == "completed"
    assert (record["input_tokens"], record["output_tokens"]) == (234, 56)
    assert record["usage_source"] == "provider"
    assert Decimal(record["cost"]) == charge
    # The upstream received its own wire format with the gateway's key, never the client's.
    received = fake.received[-1]
    assert tenant.api_key not in json.dumps(dict(received.headers))
    # ... and the catalog's upstream id, in the body or (Google, Bedrock) the path.
    sent_model = (received.json() or {}).get("model") or received.path
    assert spec.upstream_id in sent_model


@providers
def test_a_stream_is_openai_chunks_with_the_usage_chunk_and_an_exact_charge(
    provider, fake, gateway, tenant
):
    fake.script(text="Sunny and warm today.", prompt_tokens=321, completion_tokens=9, pieces=4)
    stream = gateway.openai(tenant).chat.completions.create(
        model=MODELS[provider],
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "Sunny and warm today."
    assert [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (321, 9)
    record = only_audit_record(gateway, tenant)
    assert record["status"] == "completed" and record["stream"] is True
    assert Decimal(record["cost"]) == expected_charge(321, 9)
    assert record["usage_source"] == "provider"


@providers
def test_tool_calls_round_trip_in_openai_shape_streamed_and_not(provider, fake, gateway, tenant):
    client = gateway.openai(tenant)
    call = ToolCall("get_weather", {"city": "Paris"}, id="call_paris")
    fake.script(text="", tool_calls=[call])
    completion = client.chat.completions.create(
        model=MODELS[provider], messages=MESSAGES, tools=[WEATHER_TOOL]
    )
    [tool_call] = completion.choices[0].message.tool_calls
    assert completion.choices[0].finish_reason == "tool_calls"
    assert tool_call.function.name == "get_weather"
    assert json.loads(tool_call.function.arguments) == {"city": "Paris"}

    fake.script(text="", tool_calls=[call])
    with client.chat.completions.stream(
        model=MODELS[provider], messages=MESSAGES, tools=[WEATHER_TOOL]
    ) as stream:
        final = stream.get_final_completion()
    [streamed] = final.choices[0].message.tool_calls
    assert streamed.function.name == "get_weather"
    assert json.loads(streamed.function.arguments) == {"city": "Paris"}
    assert final.choices[0].finish_reason == "tool_calls"

    # The tool result goes back upstream in the provider's own shape on the next turn.
    fake.script(text="It is sunny.")
    follow_up = client.chat.completions.create(
        model=MODELS[provider],
        tools=[WEATHER_TOOL],
        messages=[
            *MESSAGES,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": tool_call.id,
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": tool_call.function.arguments,
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": tool_call.id, "content": '{"sky": "clear"}'},
        ],
    )
    assert follow_up.choices[0].message.content == "It is sunny."
    assert "clear" in fake.received[-1].body.decode()


@providers
def test_a_rate_limit_before_the_first_chunk_is_a_real_429_and_a_failed_request(
    provider, fake, gateway, tenant
):
    fake.script(error_status=429, error_headers={"retry-after": "12"})
    with pytest.raises(openai.RateLimitError) as caught:
        gateway.openai(tenant).chat.completions.create(
            model=MODELS[provider], messages=MESSAGES, stream=True
        )
    error = caught.value.body
    assert caught.value.status_code == 429
    assert error["retry_after_seconds"] == 12 and error["retry_after_source"] == "provider_header"
    assert caught.value.response.headers["retry-after"] == "12"
    record = audit_record(gateway, tenant, caught.value.response.headers["x-request-id"])
    assert record["status"] == "failed" and record["http_status"] == 429
    assert record["cost"] in (None, "0E-9", "0") or Decimal(record["cost"]) == 0


@providers
def test_an_error_after_the_first_chunk_is_an_sse_error_frame_and_a_charged_failure(
    provider, fake, gateway, tenant
):
    fake.script(text="partial answer here", pieces=4, error_after_chunks=2)
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in gateway.openai(tenant).chat.completions.create(
            model=MODELS[provider], messages=MESSAGES, stream=True
        ):
            if chunk.choices:
                received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "partial answer here"[: len("".join(received))]
    assert "".join(received)  # something was delivered before the error
    assert not isinstance(caught.value, openai.APIStatusError)  # mid-stream: no HTTP status
    record = only_audit_record(gateway, tenant)
    assert record["status"] == "failed"
    assert record["delivered_chunks"] >= 2
    # Charged for what was used: the provider sent no final usage, so it is estimated.
    assert record["usage_source"] == "estimated"
    assert record["output_tokens"] > 0
    assert Decimal(record["cost"]) > 0


@providers
@pytest.mark.parametrize("kind", ["truncated", "reset", "bad_json", "wrong_content_type"])
def test_malformed_upstream_streams_end_cleanly_and_are_recorded_as_failed(
    provider, kind, fake, gateway, tenant
):
    fake.script(malformed=kind, text="one two three", pieces=3)
    client = gateway.openai(tenant, timeout=15.0)
    with pytest.raises(openai.APIError) as caught:
        list(client.chat.completions.create(model=MODELS[provider], messages=MESSAGES, stream=True))
    if isinstance(caught.value, openai.APIStatusError):
        assert caught.value.status_code == 502  # failed before the first chunk
    record = only_audit_record(gateway, tenant)
    assert record["status"] == "failed"
    assert record["error_code"] in (
        "upstream_malformed_response",
        "upstream_stream_truncated",
        "upstream_connection_error",
    )


@providers
@pytest.mark.parametrize("kind", ["bad_json", "wrong_content_type", "reset"])
def test_malformed_upstream_replies_are_a_502_in_the_openai_envelope(
    provider, kind, fake, gateway, tenant
):
    fake.script(malformed=kind)
    with pytest.raises(openai.APIStatusError) as caught:
        gateway.openai(tenant).chat.completions.create(model=MODELS[provider], messages=MESSAGES)
    assert caught.value.status_code == 502
    assert caught.value.body["code"] in ("upstream_malformed_response", "upstream_connection_error")
    assert "Traceback" not in caught.value.response.text
    assert only_audit_record(gateway, tenant)["status"] == "failed"


def test_a_crc_error_in_bedrock_framing_is_a_clean_error_and_a_failed_request(
    fakes, gateway, tenant
):
    fakes["bedrock"].reset()
    fakes["bedrock"].script(malformed="crc", text="abc def ghi", pieces=3)
    with pytest.raises(openai.APIError):
        list(
            gateway.openai(tenant).chat.completions.create(
                model=MODELS["bedrock"], messages=MESSAGES, stream=True
            )
        )
    record = only_audit_record(gateway, tenant)
    assert record["status"] == "failed"
    assert record["error_code"] == "upstream_malformed_response"
    assert "CRC" in record["error_message"]


# Anthropic is absent: its stream always carries usage (message_start / message_delta), so
# there is no usage-less Anthropic wire form to fake.
@pytest.mark.parametrize("provider", [p for p in ALL_PROVIDERS if p != "anthropic"])
def test_a_stream_without_provider_usage_is_charged_on_an_estimate_marked_estimated(
    provider, fake, gateway, tenant
):
    fake.script(malformed="no_usage", text="four words right here")
    chunks = list(
        gateway.openai(tenant).chat.completions.create(
            model=MODELS[provider],
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    record = only_audit_record(gateway, tenant)
    assert record["status"] == "completed" and record["usage_source"] == "estimated"
    assert Decimal(record["cost"]) == expected_charge(record["input_tokens"], 4)


@pytest.mark.parametrize("provider", sorted(EMBEDDING_MODELS))
def test_embeddings_work_for_every_provider_that_has_them_in_float_and_base64(
    provider, fakes, gateway, tenant
):
    fakes[provider].reset()
    client = gateway.openai(tenant)
    model = EMBEDDING_MODELS[provider]
    default = client.embeddings.create(model=model, input=["alpha", "beta"])  # SDK asks for base64
    floats = client.embeddings.create(model=model, input=["alpha", "beta"], encoding_format="float")
    assert len(default.data) == 2 and len(default.data[0].embedding) == 8
    assert default.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=1e-6)
    assert default.model == model
    gateway.settle()
    with gateway.client() as http:
        records = http.get("/v1/data/audit", headers=tenant.headers()).json()["data"]
    assert {r["status"] for r in records} == {"completed"} and len(records) == 2
    assert all(r["endpoint"] == "embeddings" and Decimal(r["cost"]) > 0 for r in records)


@pytest.mark.parametrize("provider", ["anthropic", "moonshot", "xai"])
def test_embeddings_for_a_provider_without_them_are_a_400_naming_the_ones_that_have_them(
    provider, gateway, tenant
):
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.openai(tenant).embeddings.create(model=MODELS[provider], input="x")
    body = caught.value.body
    assert body["code"] == "embeddings_not_supported" and body["param"] == "model"
    assert "cohere" in body["message"]
    # The alternatives are the embedding models this project's tier allows.
    catalog = gateway.services.routing.catalog
    assert "cohere-embed" in body["alternatives"] and "mistral-embed" in body["alternatives"]
    assert all(catalog.require(name).has("embeddings") for name in body["alternatives"])
    assert only_audit_record(gateway, tenant)["status"] == "rejected"


PDF_BLOCK = {
    "type": "file",
    "file": {
        "filename": "q3 report.pdf",
        "file_data": "data:application/pdf;base64,JVBERi0xLjQKJSVFT0YK",
    },
}


@pytest.mark.parametrize("provider", ["anthropic", "bedrock"])
def test_a_pdf_is_forwarded_natively_to_providers_that_read_documents(
    provider, fakes, gateway, tenant
):
    fakes[provider].reset()
    messages = [{"role": "user", "content": [{"type": "text", "text": "Summarise"}, PDF_BLOCK]}]
    gateway.openai(tenant).chat.completions.create(model=MODELS[provider], messages=messages)
    sent = fakes[provider].requests[-1]["messages"][0]["content"][1]
    if provider == "anthropic":
        assert sent["type"] == "document" and sent["source"]["media_type"] == "application/pdf"
    else:
        assert (
            sent["document"]["format"] == "pdf"
            and sent["document"]["source"]["bytes"] == "JVBERi0xLjQKJSVFT0YK"
        )


@pytest.mark.parametrize("model", ["gpt-4.1", "gpt-4o-mini", "gpt-5-mini"])
def test_a_pdf_reaches_openai_vision_models_as_a_file_part_with_base64_data_and_filename(
    model, fakes, gateway, tenant
):
    """OpenAI's chat completions take PDFs as `file` content parts (file_data base64 data
    URL + filename) on every model with vision (gpt-4o and later), gpt-4.1 included."""
    fakes["openai"].reset()
    responses_shape = {
        "type": "input_file",
        "filename": "q3 report.pdf",
        "file_data": "data:application/pdf;base64,JVBERi0xLjQKJSVFT0YK",
    }
    for block in (PDF_BLOCK, responses_shape):
        messages = [{"role": "user", "content": [{"type": "text", "text": "Summarise"}, block]}]
        gateway.openai(tenant).chat.completions.create(model=model, messages=messages)
        sent = fakes["openai"].requests[-1]["messages"][0]["content"][1]
        assert sent == {
            "type": "file",
            "file": {
                "filename": "q3 report.pdf",
                "file_data": "data:application/pdf;base64,JVBERi0xLjQKJSVFT0YK",
            },
        }


def test_a_pdf_sent_to_a_model_that_cannot_read_it_is_a_400_listing_alternatives(gateway, tenant):
    anthropic_shape = {
        "type": "document",
        "source": {
            "type": "base64",
            "media_type": "application/pdf",
            "data": "JVBERi0xLjQKJSVFT0YK",
        },
    }
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.openai(tenant).chat.completions.create(
            model=MODELS["mistral"],
            messages=[
                {"role": "user", "content": [{"type": "text", "text": "Read"}, anthropic_shape]}
            ],
        )
    body = caught.value.body
    assert body["code"] == "model_does_not_support_documents"
    # Alternatives are catalog names of models able to read the document.
    assert "claude-sonnet" in body["alternatives"]
    catalog = gateway.services.routing.catalog
    assert all(catalog.require(name).has("documents") for name in body["alternatives"])
    assert only_audit_record(gateway, tenant)["status"] == "rejected"


def test_unsupported_endpoints_answer_in_the_openai_envelope_naming_the_alternative(
    gateway, tenant
):
    client = gateway.openai(tenant)
    with pytest.raises(openai.NotFoundError) as legacy:
        client.completions.create(model="gpt-4o-mini", prompt="hi")
    assert "/v1/chat/completions" in legacy.value.body["message"]
    with httpx.Client(base_url=gateway.base_url) as http:
        for path in (
            "/v1/images/generations",
            "/v1/audio/speech",
            "/v1/files",
            "/v1/batches",
            "/v1/fine_tuning/jobs",
            "/v1/moderations",
        ):
            response = http.post(path, headers=tenant.headers(), json={})
            assert response.status_code == 501, path
            assert response.json()["error"]["code"] == "unsupported_endpoint"
            assert response.headers["x-request-id"].startswith("lg_req_")
    gateway.settle()
    with gateway.client() as http:
        records = http.get("/v1/data/audit", headers=tenant.headers(), params={"limit": 50}).json()[
            "data"
        ]
    assert len(records) == 7 and {r["status"] for r in records} == {"rejected"}


def test_the_models_list_is_the_callers_tier_of_the_catalog_under_canonical_names(gateway, tenant):
    catalog = gateway.services.routing.catalog
    listed = {model.id: model for model in gateway.openai(tenant).models.list()}
    # An unrestricted project sees every catalog model, each once, under its canonical name.
    assert set(listed) == set(catalog.names())
    for provider, model in MODELS.items():
        assert listed[catalog.require(model).name].owned_by == provider
    for model in EMBEDDING_MODELS.values():
        assert "embeddings" in listed[model].capabilities
    with gateway.client() as http:
        data = http.get("/v1/models", headers=tenant.headers()).json()["data"]
    for entry in data:  # money as strings, never floats
        assert isinstance(entry["pricing"]["input_per_million"], str)
        Decimal(entry["pricing"]["input_per_million"])
    # Retrieval accepts an alias and answers with the canonical entry; unknown names are 404.
    assert gateway.openai(tenant).models.retrieve("gemini-2.5-flash").id == "gemini-flash"
    assert gateway.openai(tenant).models.retrieve(MODELS["google"]).id == MODELS["google"]
    with pytest.raises(openai.NotFoundError):
        gateway.openai(tenant).models.retrieve("no-such-model")


def test_the_models_list_of_an_eu_strict_project_holds_only_eu_owned_models(gateway):
    strict = gateway.tenant(tier="eu_strict")
    catalog = gateway.services.routing.catalog
    listed = {model.id for model in gateway.openai(strict).models.list()}
    assert listed == {spec.name for spec in catalog.in_tier(Tier.EU_STRICT)}
    assert "mistral-embed" in listed and "mistral-small" in listed
    assert {catalog.require(name).provider for name in listed} == {"mistral"}
    assert "text-embedding-3-small" not in listed and "gpt-4o-mini" not in listed
    with pytest.raises(openai.NotFoundError):
        gateway.openai(strict).models.retrieve("gpt-4o-mini")  # exists, but not for this tier


@providers
@pytest.mark.parametrize(
    ("upstream_status", "sdk_error", "status"),
    [
        (401, openai.AuthenticationError, 401),
        (403, openai.PermissionDeniedError, 403),
        (404, openai.NotFoundError, 404),
        (503, openai.InternalServerError, 503),
        (500, openai.InternalServerError, 502),
    ],
)
def test_provider_errors_reach_the_sdk_as_its_typed_errors_with_the_mapped_status(
    provider, upstream_status, sdk_error, status, fake, gateway, tenant
):
    fake.script(error_status=upstream_status)
    with pytest.raises(sdk_error) as caught:
        gateway.openai(tenant).chat.completions.create(model=MODELS[provider], messages=MESSAGES)
    assert caught.value.status_code == status
    body = caught.value.body
    assert body["provider"] == provider
    if status == 403:
        assert body["code"] == f"{provider}_access_denied" and body["hint"]
    assert f"{provider}-upstream-key" not in caught.value.response.text  # no secret leaks
    assert only_audit_record(gateway, tenant)["http_status"] == status


@pytest.mark.parametrize("provider", ["anthropic", "google"])
def test_a_broken_stream_is_charged_the_prompt_the_provider_reported_before_it_broke(
    provider, fake, gateway, tenant
):
    fake.script(text="partial answer here", pieces=4, error_after_chunks=2, prompt_tokens=777)
    with pytest.raises(openai.APIError):
        list(
            gateway.openai(tenant).chat.completions.create(
                model=MODELS[provider], messages=MESSAGES, stream=True
            )
        )
    record = only_audit_record(gateway, tenant)
    assert record["status"] == "failed"
    assert record["input_tokens"] == 777  # from message_start / the running usageMetadata
    assert record["usage_source"] == "estimated"  # the completion part is counted by the gateway
    assert Decimal(record["cost"]) == expected_charge(777, record["output_tokens"])


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "text-embedding-3-small"}, "input"),
        ({"model": "text-embedding-3-small", "input": []}, "input"),
        ({"model": "text-embedding-3-small", "input": ["ok", ""]}, "input[1]"),
        (
            {"model": "text-embedding-3-small", "input": "x", "encoding_format": "int8"},
            "encoding_format",
        ),
        ({"model": "text-embedding-3-small", "input": "x", "dimensions": 0}, "dimensions"),
        ({"input": "x"}, "model"),
    ],
)
def test_invalid_embeddings_bodies_are_a_400_naming_the_field_and_recorded(
    body, param, gateway, tenant
):
    with httpx.Client(base_url=gateway.base_url) as http:
        response = http.post("/v1/embeddings", headers=tenant.headers(), json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert only_audit_record(gateway, tenant)["status"] == "rejected"


def test_an_embedding_is_charged_to_the_token_from_the_providers_count(fakes, gateway, tenant):
    fakes["openai"].reset()
    fakes["openai"].script(
        prompt_tokens=321
    )  # more than our count of "hello", within the bound on real usage (domain/usage.py)
    raw = gateway.openai(tenant).embeddings.with_raw_response.create(
        model=EMBEDDING_MODELS["openai"], input="hello"
    )
    assert raw.parse().usage.prompt_tokens == 321
    assert Decimal(raw.headers["x-lg-actual-cost"]) == expected_charge(321, 0)
    assert raw.headers["x-lg-usage-source"] == "provider"


def test_an_anonymous_call_to_an_unsupported_endpoint_still_gets_the_envelope(gateway):
    with httpx.Client(base_url=gateway.base_url) as http:
        response = http.post("/v1/completions", json={"model": "gpt-4o-mini", "prompt": "hi"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unsupported_endpoint"
    assert "/v1/chat/completions" in response.json()["error"]["alternative"]
