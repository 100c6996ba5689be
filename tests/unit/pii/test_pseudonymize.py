from __future__ import annotations

import pytest

from gateway.pii.pseudonymize import Pseudonymizer
from gateway.pii.rehydrate import rehydrate_chat_completion, rehydrate_text


def test_the_same_value_gets_the_same_token_and_new_values_count_up_per_type() -> None:
    mapping = Pseudonymizer()
    assert mapping.token_for("PERSON", "Anna Svensson") == "<PERSON_1>"
    assert mapping.token_for("PERSON", "Lars Berg") == "<PERSON_2>"
    assert mapping.token_for("EMAIL_ADDRESS", "a@b.se") == "<EMAIL_ADDRESS_1>"
    assert mapping.token_for("PERSON", "Anna Svensson") == "<PERSON_1>"


def test_identifiers_written_differently_share_one_token_and_restore_as_first_seen() -> None:
    mapping = Pseudonymizer()
    first = mapping.token_for("IBAN_CODE", "SE45 5000 0000 0583 9825 7466")
    assert mapping.token_for("IBAN_CODE", "se4550000000058398257466") == first
    assert mapping.token_for("SE_PERSONNUMMER", "19811218-9876") == mapping.token_for(
        "SE_PERSONNUMMER", "811218-9876"
    )
    assert mapping.value_for(first) == "SE45 5000 0000 0583 9825 7466"


def test_the_same_text_as_two_types_gets_two_tokens() -> None:
    mapping = Pseudonymizer()
    assert mapping.token_for("PERSON", "Paris") != mapping.token_for("LOCATION", "Paris")


def test_the_mapping_never_shows_values_in_its_repr_and_forgets_them_on_purge() -> None:
    mapping = Pseudonymizer()
    token = mapping.token_for("PERSON", "Anna Svensson")
    assert "Anna" not in repr(mapping)
    mapping.purge()
    assert mapping.value_for(token) is None and len(mapping) == 0
    with pytest.raises(RuntimeError):
        mapping.token_for("PERSON", "Anna Svensson")


def test_rehydration_restores_known_tokens_and_leaves_unknown_ones() -> None:
    mapping = Pseudonymizer()
    mapping.token_for("PERSON", "Anna")
    text = "Dear <PERSON_1>, <PERSON_1>'s case; <PERSON_9> and <b>bold</b> stay."
    assert (
        rehydrate_text(text, mapping) == "Dear Anna, Anna's case; <PERSON_9> and <b>bold</b> stay."
    )


def test_non_streamed_completion_is_rehydrated_in_content_and_tool_arguments() -> None:
    mapping = Pseudonymizer()
    mapping.token_for("PERSON", 'Anna "Annie" Svensson')
    body = {
        "choices": [
            {
                "message": {
                    "content": "Hello <PERSON_1>",
                    "tool_calls": [
                        {"function": {"name": "f", "arguments": '{"who": "<PERSON_1>"}'}}
                    ],
                }
            }
        ]
    }
    restored = rehydrate_chat_completion(body, mapping)
    message = restored["choices"][0]["message"]
    assert message["content"] == 'Hello Anna "Annie" Svensson'
    import json

    # A value with quotes is escaped properly: the arguments stay valid JSON.
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {
        "who": 'Anna "Annie" Svensson'
    }
