from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from domain.errors import PiiScreeningUnavailable
from gateway.pii.engine import PiiEngineSettings, PiiScreener, detect_language
from gateway.pii.policy import parse_pii_policy, parse_project_pii_policy, resolve_policy
from gateway.pii.rehydrate import rehydrate_text

VALUES = [
    "Anna Svensson",
    "se45 5000 0000 0583 9825 7466",
    "811218-9876",
    "198112189876",
    "anna.svensson@example.com",
    "4111 1111 1111 1111",
    "RSSMRA85T10A562S",
]


def _conversation() -> dict:
    return {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a bank assistant."},
            {
                "role": "user",
                "content": "I'm Anna Svensson, IBAN se45 5000 0000 0583 9825 7466 today.",
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
                            "arguments": json.dumps(
                                {
                                    "customer": {"name": "Anna Svensson", "pnr": 198112189876},
                                    "tags": ["vip", "anna.svensson@example.com"],
                                    "limit": 5,
                                }
                            ),
                        },
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": "call_1",
                "content": "Customer Anna Svensson, personnummer 811218-9876, card 4111 1111 1111 1111.",
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Also her codice fiscale RSSMRA85T10A562S."},
                    {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}},
                ],
            },
        ],
    }


def _all_strings(node: object) -> str:
    return json.dumps(node, ensure_ascii=False)


async def test_every_message_tool_argument_and_tool_result_is_scrubbed(
    screener: PiiScreener,
) -> None:
    body = _conversation()
    result = await screener.screen(body, parse_pii_policy({"action": "pseudonymize"}))
    sent = _all_strings(result.body)
    for value in VALUES:
        assert value not in sent, value
    messages = result.body["messages"]
    assert messages[1]["content"] == "I'm <PERSON_1>, IBAN <IBAN_CODE_1> today."
    arguments = json.loads(messages[2]["tool_calls"][0]["function"]["arguments"])
    # Valid JSON still, same shape, same tokens as in the other messages.
    assert arguments == {
        "customer": {"name": "<PERSON_1>", "pnr": "<SE_PERSONNUMMER_1>"},
        "tags": ["vip", "<EMAIL_ADDRESS_1>"],
        "limit": 5,
    }
    assert (
        "<PERSON_1>" in messages[3]["content"] and "<SE_PERSONNUMMER_1>" in messages[3]["content"]
    )
    assert "<CREDIT_CARD_1>" in messages[3]["content"]
    assert messages[4]["content"][0]["text"] == "Also her codice fiscale <IT_FISCAL_CODE_1>."
    assert messages[4]["content"][1] == body["messages"][4]["content"][1]
    # The caller's body is not modified: only the returned copy is scrubbed.
    assert "Anna Svensson" in body["messages"][1]["content"]


async def test_the_answer_comes_back_with_the_real_values(screener: PiiScreener) -> None:
    result = await screener.screen(_conversation(), parse_pii_policy({"rehydrate_response": True}))
    answer = "Done, <PERSON_1>: <IBAN_CODE_1> is verified."
    assert rehydrate_text(answer, result.mapping) == (
        "Done, Anna Svensson: se45 5000 0000 0583 9825 7466 is verified."
    )


async def test_the_decision_counts_types_and_redactions_but_holds_no_values(
    screener: PiiScreener,
) -> None:
    result = await screener.screen(_conversation(), parse_pii_policy({"action": "redact"}))
    decision = result.decision
    assert decision.processed and decision.policy_received and decision.action == "redact"
    counts = dict(decision.entity_counts)
    assert counts["PERSON"] == 3 and counts["IBAN_CODE"] == 1 and counts["SE_PERSONNUMMER"] == 2
    assert decision.redactions_applied == decision.entities_detected
    assert decision.language == "en" and decision.latency_ms > 0
    recorded = repr(decision) + repr(decision.as_event_fields())
    for value in VALUES:
        assert value not in recorded
    assert "<PERSON>" in result.body["messages"][1]["content"]


async def test_action_block_refuses_with_types_and_no_values(screener: PiiScreener) -> None:
    result = await screener.screen(_conversation(), parse_pii_policy({"action": "block"}))
    assert result.violation is not None
    assert result.violation.code == "guardrail_violation"
    assert result.violation.details["scanner"] == "presidio"
    assert "IBAN_CODE" in result.violation.details["entity_types"]
    message = str(result.violation) + repr(result.violation.details)
    for value in VALUES:
        assert value not in message
    assert result.decision.blocked and result.decision.redactions_applied == 0
    assert result.body == {}
    with pytest.raises(type(result.violation)):
        result.raise_for_violation()


async def test_action_block_lets_a_clean_request_through_unchanged(screener: PiiScreener) -> None:
    body = {"messages": [{"role": "user", "content": "What is the capital gains tax rate?"}]}
    result = await screener.screen(body, parse_pii_policy({"action": "block"}))
    assert result.violation is None and result.body == body


async def test_a_project_guardrail_blocks_a_type_even_when_the_request_pseudonymizes(
    screener: PiiScreener,
) -> None:
    project = parse_project_pii_policy({"block_entity_types": ["CREDIT_CARD"]})
    policy = resolve_policy({"action": "pseudonymize"}, project)
    result = await screener.screen(_conversation(), policy)
    assert result.violation is not None
    assert result.violation.details["entity_types"] == ["CREDIT_CARD"]


async def test_a_disabled_policy_is_recorded_as_received_but_not_processed(
    screener: PiiScreener,
) -> None:
    body = _conversation()
    result = await screener.screen(body, parse_pii_policy({"enabled": False}))
    assert result.body == body
    assert result.decision.policy_received and not result.decision.processed


async def test_numbers_that_look_like_ids_but_fail_their_checksum_are_left_alone(
    screener: PiiScreener,
) -> None:
    text = "Order 811218-9875, ref 12345678903, code 12345678A and RSSMRA85T10A562T."
    body = {"messages": [{"role": "user", "content": text}]}
    result = await screener.screen(body, parse_pii_policy({}))
    assert result.body["messages"][0]["content"] == text


async def test_embeddings_input_is_screened_too(screener: PiiScreener) -> None:
    body = {"model": "text-embedding-3-small", "input": ["Mail anna.svensson@example.com", "ok"]}
    result = await screener.screen(body, parse_pii_policy({}))
    assert result.body["input"] == ["Mail <EMAIL_ADDRESS_1>", "ok"]


async def test_a_declared_language_wins_over_detection(screener: PiiScreener) -> None:
    body = {"messages": [{"role": "user", "content": "the and is of Marie Dubois"}]}
    result = await screener.screen(body, parse_pii_policy({"language": "fr"}))
    assert result.decision.language == "fr"


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Bonjour, je voudrais changer mon adresse pour la livraison.", "fr"),
        ("Hallo, ich möchte meine Adresse für die Lieferung ändern, bitte.", "de"),
        ("Ciao, vorrei cambiare il mio indirizzo per la consegna.", "it"),
        ("Hej, jag vill ändra min adress för leveransen och det är bråttom.", "sv"),
        ("Hola, quiero cambiar mi dirección para la entrega, por favor.", "es"),
        ("Hello, I would like to change my address for the delivery.", "en"),
        ("12345 67890", "en"),
    ],
)
def test_language_is_detected_from_function_words(text: str, language: str) -> None:
    assert detect_language(text) == language


async def test_screening_runs_off_the_event_loop(screener: PiiScreener) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    task = asyncio.create_task(ticker())
    long_text = "Anna Svensson wrote to Lars Berg about the invoice. " * 150
    await screener.screen(
        {"messages": [{"role": "user", "content": long_text}]}, parse_pii_policy({})
    )
    task.cancel()
    assert ticks > 5  # the loop kept running while spaCy worked


async def test_screening_fails_closed_when_a_configured_model_is_not_installed() -> None:
    engine = PiiScreener(PiiEngineSettings(ner_models={"en": "en_core_web_not_installed"}))
    with pytest.raises(PiiScreeningUnavailable) as caught:
        engine.load()
    assert caught.value.code == "pii_screening_unavailable"
    # Every later request is refused the same way; nothing was downloaded, nothing sent.
    with pytest.raises(PiiScreeningUnavailable):
        await engine.screen(_conversation(), parse_pii_policy({}))
    engine.close()


async def test_a_request_that_triggers_the_first_load_fails_closed_if_the_load_fails() -> None:
    engine = PiiScreener(PiiEngineSettings(ner_models={"en": "xx_missing_model"}))
    with pytest.raises(PiiScreeningUnavailable):
        await engine.screen(_conversation(), parse_pii_policy({}))  # loads on first need
    assert not engine.ready
    engine.close()


async def test_screening_fails_closed_when_analysis_crashes(
    screener: PiiScreener, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Anna Svensson")  # an error message that quotes the text

    monkeypatch.setattr(screener._analyzer, "analyze", explode)
    with pytest.raises(PiiScreeningUnavailable) as caught:
        await screener.screen(_conversation(), parse_pii_policy({}))
    assert "Anna" not in str(caught.value)


async def test_screening_fails_closed_when_it_takes_too_long(
    screener: PiiScreener, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    real_analyze = screener._analyzer.analyze

    def slow(*args: object, **kwargs: object) -> object:
        release.wait(2)
        return real_analyze(*args, **kwargs)

    monkeypatch.setattr(screener._analyzer, "analyze", slow)
    monkeypatch.setattr(screener, "settings", PiiEngineSettings(screen_timeout_s=0.05))
    started = time.perf_counter()
    with pytest.raises(PiiScreeningUnavailable):
        await screener.screen(_conversation(), parse_pii_policy({}))
    assert time.perf_counter() - started < 1.0
    release.set()


async def test_a_request_over_the_text_limit_is_refused_not_sent_unscreened() -> None:
    engine = PiiScreener(PiiEngineSettings(text_chars_max=10))
    engine._analyzer = object()  # loaded enough: the size check comes first
    with pytest.raises(PiiScreeningUnavailable):
        await engine.screen(
            {"messages": [{"role": "user", "content": "x" * 11}]}, parse_pii_policy({})
        )
    engine.close()


async def test_a_name_under_a_name_key_in_tool_arguments_is_pseudonymized(
    screener: PiiScreener,
) -> None:
    arguments = {"customer_name": "Emily Clarke", "city": "Valencia", "status": "Active", "n": 3}
    body = {
        "messages": [
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "c",
                        "type": "function",
                        "function": {"name": "f", "arguments": json.dumps(arguments)},
                    }
                ],
            }
        ]
    }
    result = await screener.screen(body, parse_pii_policy({}))
    sent = json.loads(result.body["messages"][0]["tool_calls"][0]["function"]["arguments"])
    assert sent == {
        "customer_name": "<PERSON_1>",
        "city": "<LOCATION_1>",
        "status": "Active",
        "n": 3,
    }


@pytest.mark.parametrize(
    "text",
    [
        "Hola team, la fiesta is on Friday; no problem.",
        "Is it del Mar or de la Cruz?",
        "Please send the file to Carlos de la Vega by Monday.",
        '{"status": "ok", "holder": "Robert Taylor", "note": "no change"}',
    ],
)
def test_an_english_sentence_with_a_few_words_shared_with_spanish_stays_english(
    text: str,
) -> None:
    assert detect_language(text) == "en"


async def test_the_recorded_language_of_an_english_prompt_is_english(
    screener: PiiScreener,
) -> None:
    body = {"messages": [{"role": "user", "content": "Is it del Mar or de la Cruz? No idea."}]}
    result = await screener.screen(body, parse_pii_policy({}))
    assert result.decision.language == "en"


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Please forward the invoice to Jean-Pierre Dubois in Lyon.", "Jean-Pierre Dubois"),
        ("Our new hire Anna-Karin Lindqvist starts on Monday.", "Anna-Karin Lindqvist"),
        ("Ask Marie-Claire Martin-Lefebvre to sign the form.", "Marie-Claire Martin-Lefebvre"),
        ("Mon collègue Jean-Pierre Dubois habite à Lyon.", "Jean-Pierre Dubois"),
    ],
)
async def test_a_hyphenated_name_is_pseudonymized_whole(
    screener: PiiScreener, text: str, name: str
) -> None:
    result = await screener.screen(
        {"messages": [{"role": "user", "content": text}]}, parse_pii_policy({})
    )
    sent = result.body["messages"][0]["content"]
    for part in name.replace("-", " ").split():
        assert part not in sent, sent
    assert "<PERSON_1>" in sent and "<PERSON_2>" not in sent


async def test_a_hyphenated_word_in_an_email_address_is_left_to_the_email_recognizer(
    screener: PiiScreener,
) -> None:
    text = "Write to Jean-Pierre.Dubois@example.com about the Coca-Cola order."
    result = await screener.screen(
        {"messages": [{"role": "user", "content": text}]}, parse_pii_policy({})
    )
    sent = result.body["messages"][0]["content"]
    assert "Dubois@example.com" not in sent and "<EMAIL_ADDRESS_1>" in sent
