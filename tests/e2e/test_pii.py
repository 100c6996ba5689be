"""PII end to end: the real openai SDK over real HTTP, through the gateway, to fake
OpenAI-format upstreams that record what they were sent."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from gateway.observability.logs import JsonFormatter
from gateway.pii.service import pii_service
from gateway.serving import BackgroundServer
from gateway.simulator import SimulatorState
from tests.e2e.helpers import audit_record
from tests.support.harness import Gateway, openai_upstream_env, running_gateway, start_gateway

NAME = "Anna Svensson"
IBAN = "SE45 5000 0000 0583 9825 7466"
EMAIL = "anna.svensson@example.com"
PNR = "811218-9876"
CARD = "4111 1111 1111 1111"
ALL_VALUES = (NAME, IBAN, EMAIL, PNR, CARD, "Lars Berg", "RSSMRA85T10A562S", "5000 0000 0583")

MESSAGES = [
    {"role": "system", "content": "You are a careful bank assistant."},
    {
        "role": "user",
        "content": f"I'm {NAME}, IBAN {IBAN}, mail {EMAIL}. Move 20 EUR to Lars Berg.",
    },
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {
                    "name": "lookup_customer",
                    "arguments": json.dumps({"name": NAME, "personnummer": PNR}),
                },
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": f"Found {NAME}, card {CARD}."},
    {"role": "user", "content": "My codice fiscale is RSSMRA85T10A562S. Confirm, please."},
]
PSEUDONYMIZE = {"action": "pseudonymize", "rehydrate_response": True}
REPLY = "Done, <PERSON_1>: 20 EUR from <IBAN_CODE_1> to <PERSON_2>, receipt to <EMAIL_ADDRESS_1>."
RESTORED = f"Done, {NAME}: 20 EUR from {IBAN} to Lars Berg, receipt to {EMAIL}."


def _sent_to_upstream(state: SimulatorState) -> str:
    return json.dumps(state.requests, ensure_ascii=False)


def _screened(client: Any, policy: dict[str, Any], **body: Any) -> Any:
    """A gpt-4o-mini chat of MESSAGES (unless `messages` says otherwise) under the PII
    policy `policy`."""
    body.setdefault("messages", MESSAGES)
    return client.chat.completions.create(
        model="gpt-4o-mini", extra_body={"pii_policy": policy}, **body
    )


def _gateway_over(
    tmp_path: Path, server: BackgroundServer, **settings: str
) -> AbstractContextManager[Gateway]:
    """A running gateway (data under `tmp_path`, gpt-4o-mini priced) whose OpenAI-format
    upstream is `server`, with `settings` on top."""
    return running_gateway(
        {
            "LEDGERGATE_DATA_DIR": str(tmp_path / "data"),
            **openai_upstream_env(server.base_url),
            **settings,
        }
    )


@pytest.fixture
def pii_simulator(simulator: tuple[BackgroundServer, SimulatorState]) -> SimulatorState:
    state = simulator[1]
    state.reply = REPLY
    state.words_per_chunk = 1
    return state


def test_the_provider_sees_only_scrubbed_text_and_the_client_gets_real_values(
    gateway: Gateway, pii_simulator: SimulatorState
) -> None:
    tenant = gateway.tenant()
    raw = gateway.openai(tenant).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_body={"pii_policy": PSEUDONYMIZE}
    )
    assert raw.parse().choices[0].message.content == RESTORED

    sent = _sent_to_upstream(pii_simulator)
    for value in ALL_VALUES:
        assert value not in sent, value
    upstream_messages = pii_simulator.requests[-1]["messages"]
    assert upstream_messages[1]["content"] == (
        "I'm <PERSON_1>, IBAN <IBAN_CODE_1>, mail <EMAIL_ADDRESS_1>. Move 20 EUR to <PERSON_2>."
    )
    arguments = json.loads(upstream_messages[2]["tool_calls"][0]["function"]["arguments"])
    assert arguments == {"name": "<PERSON_1>", "personnummer": "<SE_PERSONNUMMER_1>"}
    assert upstream_messages[3]["content"] == "Found <PERSON_1>, card <CREDIT_CARD_1>."
    assert "pii_policy" not in pii_simulator.requests[-1]

    record = audit_record(gateway, tenant, raw.headers["x-request-id"])
    assert record["status"] == "completed"
    assert record["pii_policy_received"] is True and record["pii_processed"] is True
    assert record["pii_entities_detected"] >= 8
    assert record["pii_redactions_applied"] == record["pii_entities_detected"]
    assert record["pii_entity_counts"]["PERSON"] >= 3
    assert record["pii_action"] == "pseudonymize"


def test_a_streamed_answer_is_rehydrated_as_it_flows(
    sqlite_gateway: Gateway, pii_simulator: SimulatorState
) -> None:
    tenant = sqlite_gateway.tenant()
    stream = sqlite_gateway.openai(tenant).chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"pii_policy": PSEUDONYMIZE},
    )
    pieces = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    assert "".join(pieces) == RESTORED
    # Streamed piece by piece, not buffered into one final chunk.
    assert len(pieces) > 10
    for value in ALL_VALUES:
        assert value not in _sent_to_upstream(pii_simulator)


def test_action_block_refuses_with_types_and_never_calls_the_provider(
    gateway: Gateway, pii_simulator: SimulatorState
) -> None:
    tenant = gateway.tenant()
    with pytest.raises(openai.BadRequestError) as caught:
        _screened(gateway.openai(tenant), {"action": "block"})
    error = caught.value.body
    assert caught.value.status_code == 400 and error["code"] == "guardrail_violation"
    assert error["scanner"] == "presidio"
    assert {"PERSON", "IBAN_CODE", "CREDIT_CARD"} <= set(error["entity_types"])
    for value in ALL_VALUES:
        assert value not in json.dumps(error)
    assert pii_simulator.requests == []
    request_id = caught.value.response.headers["x-request-id"]
    record = audit_record(gateway, tenant, request_id)
    assert record["status"] == "rejected" and record["error_code"] == "guardrail_violation"
    assert record["pii_processed"] is True and record["pii_blocked"] is True
    assert record["pii_redactions_applied"] == 0 and record["pii_entities_detected"] > 0


def test_a_malformed_pii_policy_is_a_400_not_a_500(
    sqlite_gateway: Gateway, pii_simulator: SimulatorState
) -> None:
    tenant = sqlite_gateway.tenant()
    with pytest.raises(openai.BadRequestError) as caught:
        _screened(sqlite_gateway.openai(tenant), {"action": "shred"})
    assert caught.value.body["code"] == "invalid_pii_policy"
    assert caught.value.body["param"] == "pii_policy.action"
    assert pii_simulator.requests == []


def test_screening_that_cannot_run_refuses_the_request_and_sends_nothing(
    tmp_path: Path, simulator: tuple[BackgroundServer, SimulatorState]
) -> None:
    server, state = simulator
    with _gateway_over(
        tmp_path, server, LEDGERGATE_PII_NER_MODELS="en=xx_model_not_installed"
    ) as gateway:
        tenant = gateway.tenant()
        client = gateway.openai(tenant)
        with pytest.raises(openai.APIStatusError) as caught:
            _screened(client, {})
        assert caught.value.status_code == 503
        assert caught.value.body["code"] == "pii_screening_unavailable"
        assert state.requests == []
        record = audit_record(gateway, tenant, caught.value.response.headers["x-request-id"])
        assert record["status"] == "rejected"
        assert record["pii_policy_received"] is True and record["pii_processed"] is False
        # A request that asks for no screening is unaffected.
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES[:2])
        assert len(state.requests) == 1


def test_a_project_default_policy_screens_requests_that_carry_none(
    tmp_path: Path, simulator: tuple[BackgroundServer, SimulatorState]
) -> None:
    server, state = simulator
    with _gateway_over(
        tmp_path,
        server,
        LEDGERGATE_PII_PROJECT_POLICIES=json.dumps(
            {"*": {"default": {"action": "redact"}, "block_entity_types": ["CREDIT_CARD"]}}
        ),
    ) as gateway:
        tenant = gateway.tenant()
        client = gateway.openai(tenant)
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES[:2]
        )
        assert raw.status_code == 200
        assert state.requests[-1]["messages"][1]["content"] == (
            "I'm <PERSON>, IBAN <IBAN_CODE>, mail <EMAIL_ADDRESS>. Move 20 EUR to <PERSON>."
        )
        record = audit_record(gateway, tenant, raw.headers["x-request-id"])
        assert record["pii_policy_received"] is False and record["pii_processed"] is True
        # The project's guardrail rule: a card anywhere refuses the request.
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert caught.value.body["entity_types"] == ["CREDIT_CARD"]


class _LeakyUpstream:
    """An OpenAI-format upstream that streams an IBAN and then a long tail, and records
    whether the gateway hung up on it."""

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()
        self.cancelled_flag = False
        self.chunks_sent = 0
        self.requests: list[dict[str, Any]] = []
        self.app = FastAPI()

        @self.app.post("/v1/chat/completions")
        async def chat(request: Request) -> StreamingResponse:
            self.requests.append(orjson.loads(await request.body()))
            words = (
                "Your other account is DE89 3704 0044 0532 0130 00 and " + "more " * 200
            ).split(" ")

            def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
                data = {
                    "id": "chatcmpl-leaky",
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": "gpt-4o-mini",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
                return b"data: " + orjson.dumps(data) + b"\n\n"

            async def events() -> Any:
                try:
                    yield chunk({"role": "assistant", "content": ""})
                    for word in words:
                        await asyncio.sleep(0.01)
                        self.chunks_sent += 1
                        yield chunk({"content": word + " "})
                    yield chunk({}, "stop")
                    yield b"data: [DONE]\n\n"
                except (asyncio.CancelledError, GeneratorExit):
                    self.cancelled_flag = True
                    raise

            return StreamingResponse(events(), media_type="text/event-stream")


@pytest.fixture
def leaky_upstream() -> Iterator[tuple[BackgroundServer, _LeakyUpstream]]:
    upstream = _LeakyUpstream()
    with BackgroundServer(upstream.app) as server:
        yield server, upstream


def test_the_streaming_firewall_severs_the_stream_records_why_and_cancels_upstream(
    tmp_path: Path, leaky_upstream: tuple[BackgroundServer, _LeakyUpstream]
) -> None:
    server, upstream = leaky_upstream
    with _gateway_over(tmp_path, server) as gateway:
        tenant = gateway.tenant()
        stream = gateway.openai(tenant).chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Which accounts do I have?"}],
            stream=True,
            extra_body={"pii_policy": {"block_output_entity_types": ["IBAN_CODE"]}},
        )
        request_id = stream.headers["x-request-id"]
        received = []
        with pytest.raises(openai.APIError) as caught:
            for chunk in stream.parse():
                if chunk.choices and chunk.choices[0].delta.content:
                    received.append(chunk.choices[0].delta.content)
        assert "guardrail_violation" in str(caught.value.body) or "personal data" in str(
            caught.value.message
        )
        text = "".join(received)
        assert "3704" not in text and "DE89" not in text
        assert text.startswith("Your other account is")
        deadline = time.monotonic() + 5
        while not upstream.cancelled_flag and time.monotonic() < deadline:
            time.sleep(0.05)
        assert upstream.cancelled_flag, "the upstream call was not cancelled"
        assert upstream.chunks_sent < 60  # of ~210: it stopped right after the IBAN
        record = audit_record(gateway, tenant, request_id)
        assert record["status"] == "failed" and record["error_code"] == "guardrail_violation"
        assert "IBAN_CODE" in record["error_message"]
        # The whole IBAN and its distinguishing runs, in any spacing; a 4-digit fragment alone
        # can occur by chance in a random UUID or hash of the record.
        flat = json.dumps(record).replace(" ", "")
        for fragment in ("DE89370400440532013000", "DE89", "37040044", "05320130"):
            assert fragment not in flat, fragment


def test_no_pii_value_reaches_the_event_store_read_models_or_logs(
    tmp_path: Path,
    simulator: tuple[BackgroundServer, SimulatorState],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A PII-heavy run — plain, streamed, blocked, guardrail-refused, invalid-policy — then
    every stored event, every read-model file byte and every log line is searched."""
    server, state = simulator
    state.reply = REPLY
    data_dir = tmp_path / "data"  # where _gateway_over keeps the store
    caplog.set_level(logging.DEBUG)
    with _gateway_over(tmp_path, server, LEDGERGATE_LOG_LEVEL="DEBUG") as gateway:
        tenant = gateway.tenant()
        client = gateway.openai(tenant)
        for _ in range(3):
            _screened(client, PSEUDONYMIZE)
            for _chunk in _screened(client, {**PSEUDONYMIZE, "sensitivity": "high"}, stream=True):
                pass
        for policy in ({"action": "block"}, {"action": "redact", "rehydrate_response": True}):
            with pytest.raises(openai.BadRequestError):
                _screened(client, policy)
        gateway.settle()
        with gateway.client() as http:
            audit = http.get("/v1/data/audit?limit=50", headers=tenant.headers()).json()
        assert sum(r["pii_entities_detected"] for r in audit["data"]) > 30  # PII did flow in

        notifications = gateway.services.app.recorder.select_notifications(start=1, limit=100_000)
        assert len(notifications) > 20
        stored = b"".join(n.state for n in notifications) + json.dumps(audit).encode()
        files = b"".join(p.read_bytes() for p in data_dir.rglob("*") if p.is_file())
        logs = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
        # The production log format too: every record as the JSON line it would be.
        json_formatter = JsonFormatter()
        json_logs = "\n".join(json_formatter.format(r) for r in caplog.records)
        assert '"event": "access"' in json_logs or '"event":"access"' in json_logs
        with gateway.client() as http:
            metrics = http.get("/metrics").text
        assert "ledgergate_requests_total" in metrics
        for value in ALL_VALUES:
            encoded = value.encode()
            assert encoded not in stored, f"a PII value is in the event store ({len(value)} chars)"
            assert encoded not in files, "a PII value is in a data file"
            assert value not in logs, "a PII value is in the logs"
            assert value not in json_logs, "a PII value is in the JSON logs"
            assert value not in metrics, "a PII value is in the metrics"
        for secret in (tenant.api_key, "sk-test"):
            assert secret not in json_logs and secret not in metrics, "a key leaked"
        # The events that were searched are the real thing: decisions are in there.
        assert b"pii_screened" in stored.lower() or b"PiiScreened" in b"".join(
            n.topic.encode() for n in notifications
        )


class _ScriptedUpstream:
    """Streams the given deltas as OpenAI chunks (then a finish chunk), or answers a
    non-streamed request with `reply`; records what it was sent."""

    def __init__(self, deltas: list[dict[str, Any]], finish: str, reply: str = "") -> None:
        self.requests: list[dict[str, Any]] = []
        self.app = FastAPI()

        @self.app.post("/v1/chat/completions")
        async def chat(request: Request) -> Any:
            body = orjson.loads(await request.body())
            self.requests.append(body)
            base = {"id": "chatcmpl-s", "created": 1, "model": "gpt-4o-mini"}
            if not body.get("stream"):
                return {
                    **base,
                    "object": "chat.completion",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": reply},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
                }

            def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
                data = {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
                }
                return b"data: " + orjson.dumps(data) + b"\n\n"

            async def events() -> Any:
                for delta in deltas:
                    yield chunk(delta)
                yield chunk({}, finish)
                yield b"data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")


def test_streamed_tool_call_arguments_are_rehydrated_into_valid_json(tmp_path: Path) -> None:
    arguments_parts = ['{"customer": "<PER', 'SON_1>", "iban": "<IBAN', "_CODE_1>", '"}']
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": None}]
    deltas.append(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_9",
                    "type": "function",
                    "function": {"name": "pay", "arguments": ""},
                }
            ]
        }
    )
    deltas += [
        {"tool_calls": [{"index": 0, "function": {"arguments": part}}]} for part in arguments_parts
    ]
    upstream = _ScriptedUpstream(deltas, "tool_calls")
    with BackgroundServer(upstream.app) as server:
        with _gateway_over(tmp_path, server) as gateway:
            tenant = gateway.tenant()
            stream = gateway.openai(tenant).chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": f"Please pay {NAME} at {IBAN} now."}],
                stream=True,
                extra_body={"pii_policy": PSEUDONYMIZE},
            )
            arguments = ""
            for chunk in stream:
                for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                    arguments += call.function.arguments or ""
            assert json.loads(arguments) == {"customer": NAME, "iban": IBAN}
            sent = json.dumps(upstream.requests)
            assert IBAN not in sent and "Svensson" not in sent


def test_a_non_streamed_answer_with_a_blocked_type_is_withheld(tmp_path: Path) -> None:
    upstream = _ScriptedUpstream([], "stop", reply="Sure: card 4111 1111 1111 1111 is on file.")
    with BackgroundServer(upstream.app) as server:
        with _gateway_over(tmp_path, server) as gateway:
            tenant = gateway.tenant()
            with pytest.raises(openai.BadRequestError) as caught:
                gateway.openai(tenant).chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": "Which card do I have?"}],
                    extra_body={"pii_policy": {"block_output_entity_types": ["CREDIT_CARD"]}},
                )
            assert caught.value.body["code"] == "guardrail_violation"
            assert caught.value.body["scanner"] == "output_firewall"
            assert "4111" not in json.dumps(caught.value.body)
            record = audit_record(gateway, tenant, caught.value.response.headers["x-request-id"])
            assert record["status"] == "failed" and record["error_code"] == "guardrail_violation"


def test_the_pii_engine_is_loaded_and_warmed_when_the_app_starts(tmp_path: Path) -> None:
    # A distinct engine configuration gets its own (not yet loaded) shared screener.
    gateway = start_gateway(
        {
            "LEDGERGATE_DATA_DIR": str(tmp_path / "data"),
            "LEDGERGATE_PII_WARM_AT_START": "1",
            "LEDGERGATE_PII_TIMEOUT_S": "9.5",
        }
    )
    try:
        screener = pii_service(gateway.services).screener
        deadline = time.monotonic() + 60
        while not screener.ready and time.monotonic() < deadline:
            time.sleep(0.1)  # the app answers meanwhile: warming is off the request path
            with gateway.client() as http:
                assert http.get("/health").status_code == 200
        assert screener.ready and screener.load_seconds is not None
    finally:
        gateway.server.stop()
        screener.close()


def test_with_screening_only_the_screened_prompt_is_hashed_into_the_ledger(
    sqlite_gateway: Gateway, pii_simulator: SimulatorState
) -> None:
    import hashlib

    tenant = sqlite_gateway.tenant()
    messages = [{"role": "user", "content": f"My personnummer is {PNR}"}]
    raw = sqlite_gateway.openai(tenant).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=messages, extra_body={"pii_policy": {}}
    )
    record = audit_record(sqlite_gateway, tenant, raw.headers["x-request-id"])

    def digest(value: object) -> str:
        return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()

    # The raw prompt's hash would be reversible by enumerating personnummer.
    assert record["prompt_sha256"] != digest(messages)
    assert record["prompt_sha256"] == digest(pii_simulator.requests[-1]["messages"])


def test_embeddings_inputs_are_screened_before_the_provider_sees_them(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    app = FastAPI()

    @app.post("/v1/embeddings")
    async def embed(request: Request) -> dict[str, Any]:
        body = orjson.loads(await request.body())
        seen.append(body)
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": [0.1, 0.2]}
                for i in range(len(body["input"]))
            ],
            "model": body["model"],
            "usage": {"prompt_tokens": 8, "total_tokens": 8},
        }

    with BackgroundServer(app) as server:
        with _gateway_over(tmp_path, server) as gateway:
            gateway.set_price("text-embedding-3-small", "0.02", "0")
            tenant = gateway.tenant()
            result = gateway.openai(tenant).embeddings.create(
                model="text-embedding-3-small",
                input=[f"Customer {EMAIL} paid from {IBAN}", "no personal data here"],
                encoding_format="float",
                extra_body={"pii_policy": {"action": "redact"}},
            )
            assert len(result.data) == 2
            assert seen[-1]["input"] == [
                "Customer <EMAIL_ADDRESS> paid from <IBAN_CODE>",
                "no personal data here",
            ]
            assert "pii_policy" not in seen[-1]


def test_the_value_mapping_is_purged_when_each_request_ends(
    sqlite_gateway: Gateway, pii_simulator: SimulatorState, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.pii.pseudonymize import Pseudonymizer

    created: list[Pseudonymizer] = []
    original_init = Pseudonymizer.__init__

    def tracking_init(self: Pseudonymizer) -> None:
        original_init(self)
        created.append(self)

    monkeypatch.setattr(Pseudonymizer, "__init__", tracking_init)
    tenant = sqlite_gateway.tenant()
    client = sqlite_gateway.openai(tenant)
    _screened(client, PSEUDONYMIZE)
    for _chunk in _screened(client, PSEUDONYMIZE, stream=True):
        pass
    with pytest.raises(openai.BadRequestError):
        _screened(client, {"action": "block"})
    deadline = time.monotonic() + 5  # the stream's cleanup runs as its response closes
    while time.monotonic() < deadline and not all("purged=True" in repr(m) for m in created):
        time.sleep(0.05)
    assert len(created) == 3
    assert all("purged=True" in repr(mapping) and len(mapping) == 0 for mapping in created)


def test_the_firewall_also_watches_streamed_tool_call_arguments(tmp_path: Path) -> None:
    parts = ['{"to": "DE89 3704', " 0044 0532 0130 00", '", "amount": 5}']
    deltas: list[dict[str, Any]] = [
        {"role": "assistant", "content": None},
        {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                         "function": {"name": "pay", "arguments": ""}}]},
        *({"tool_calls": [{"index": 0, "function": {"arguments": part}}]} for part in parts),
    ]  # fmt: skip
    upstream = _ScriptedUpstream(deltas, "tool_calls")
    with BackgroundServer(upstream.app) as server:
        with _gateway_over(tmp_path, server) as gateway:
            tenant = gateway.tenant()
            stream = gateway.openai(tenant).chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "Pay my landlord."}],
                stream=True,
                extra_body={"pii_policy": {"block_output_entity_types": ["IBAN_CODE"]}},
            )
            arguments = ""
            with pytest.raises(openai.APIError):
                for chunk in stream:
                    for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                        arguments += call.function.arguments or ""
            assert "3704" not in arguments
