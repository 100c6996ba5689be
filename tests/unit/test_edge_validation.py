"""The edge's building blocks, without IO: the non-recursive JSON encoder, the body walker,
the id and model syntaxes and the personal-data screen of kept short values."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.json_bytes import canonical_sha256, dumps, dumps_iterative
from gateway.validation import (
    _VALID_MODEL_NAMES,
    NESTING_DEPTH_MAX,
    VALID_MODEL_NAMES_MAX,
    check_body_strings,
    check_id,
    looks_like_personal_data,
    parse_json_body,
    upstream_body_of,
    validate_model,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(blacklist_categories=("Cs",))),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(st.characters(blacklist_categories=("Cs",)), max_size=8), children
        )
    ),
    max_leaves=20,
)


def nested(depth: int) -> Any:
    value: Any = {"k": "v"}
    for index in range(depth):
        value = [value] if index % 2 else {"n": value}
    return value


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_the_iterative_encoder_writes_the_same_bytes_as_orjson(value) -> None:
    assert dumps_iterative(value) == orjson.dumps(value)
    assert dumps_iterative(value, sort_keys=True) == orjson.dumps(
        value, option=orjson.OPT_SORT_KEYS
    )


def test_encoding_and_hashing_a_value_deeper_than_orjson_allows_does_not_fail() -> None:
    deep = nested(NESTING_DEPTH_MAX)
    with pytest.raises(orjson.JSONEncodeError):
        orjson.dumps(deep)
    encoded = dumps(deep, sort_keys=True)
    assert orjson.loads(encoded) == deep
    assert canonical_sha256(deep) == canonical_sha256(nested(NESTING_DEPTH_MAX))
    # Far past any recursion limit, too.
    assert len(dumps_iterative(nested(50_000))) > 50_000


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m\x00"}, "model"),
        ({"messages": [{"content": [{"text": "\ud800"}]}]}, "messages[0].content[0].text"),
        ({"a": {"b\x00": 1}}, "a"),
        ({"customer@example.com": "\x00"}, "*"),
    ],
)
def test_a_nul_or_lone_surrogate_anywhere_names_its_field_but_not_its_value(body, param) -> None:
    with pytest.raises(GatewayError) as raised:
        check_body_strings(body)
    assert raised.value.param == param
    assert "example.com" not in raised.value.message


def test_nesting_is_bounded_and_a_deeper_body_is_refused_without_recursing() -> None:
    check_body_strings({"x": nested(NESTING_DEPTH_MAX - 5)})
    with pytest.raises(GatewayError) as raised:
        check_body_strings({"x": nested(100_000)})
    assert raised.value.code == "invalid_request"


def test_a_lone_surrogate_in_the_raw_body_is_named_not_just_invalid_json() -> None:
    with pytest.raises(GatewayError) as raised:
        parse_json_body(b'{"model": "gpt", "user": "a\\udc00"}')
    assert (raised.value.code, raised.value.param) == ("invalid_request", "user")


@pytest.mark.parametrize(
    "value",
    [
        "DE89370400440532013000",
        "trace-DE89370400440532013000",
        "4111111111111111",
        "jean@example.com",
        "811228-9874",  # Swedish personnummer with a valid check digit
    ],
)
def test_short_kept_values_holding_personal_data_are_recognised(value) -> None:
    assert looks_like_personal_data(value)


@pytest.mark.parametrize(
    "value",
    ["gpt-4o-mini", "eu-strict:small", "550e8400-e29b-41d4-a716-446655440000", "req-2024-08-06"],
)
def test_ordinary_model_names_and_ids_are_not_personal_data(value) -> None:
    assert not looks_like_personal_data(value)


@pytest.mark.parametrize("value", ["", "a b", "jean@example.com", "x" * 129, "-lead", "é"])
def test_ids_have_a_strict_syntax(value) -> None:
    with pytest.raises(GatewayError):
        check_id(value, "trace_id")


@pytest.mark.parametrize("model", ["gpt 4o", "gpt-4o\nx", "DE89370400440532013000", "<script>"])
def test_model_names_have_a_strict_syntax_and_are_screened(model) -> None:
    with pytest.raises(GatewayError) as raised:
        validate_model({"model": model})
    assert raised.value.param == "model"
    assert model.strip() not in raised.value.message


def test_remembered_model_names_are_only_those_that_passed_and_stay_bounded() -> None:
    _VALID_MODEL_NAMES.clear()
    assert validate_model({"model": " gpt-4o-mini "}) == "gpt-4o-mini"
    assert validate_model({"model": " gpt-4o-mini "}) == "gpt-4o-mini"  # remembered
    for rejected in ("DE89370400440532013000", "jean@example.com", "gpt 4o"):
        for _ in range(2):  # a refused name is refused again: it was never remembered
            with pytest.raises(GatewayError):
                validate_model({"model": rejected})
    assert set(_VALID_MODEL_NAMES) == {" gpt-4o-mini "}
    with pytest.raises(GatewayError):
        validate_model({"model": None})
    for index in range(VALID_MODEL_NAMES_MAX + 10):
        validate_model({"model": f"model-{index}"})
    assert len(_VALID_MODEL_NAMES) <= VALID_MODEL_NAMES_MAX


def test_every_gateway_extension_is_removed_before_forwarding() -> None:
    body = {
        "model": "m",
        "messages": [],
        "trace_id": "t",
        "conversation_id": "c",
        "routing_preferences": {},
        "pii_policy": {},
        "metadata": {"k": "v"},
    }
    assert upstream_body_of(body) == {"model": "m", "messages": [], "metadata": {"k": "v"}}


def test_a_one_megabyte_word_is_counted_in_pieces_instead_of_refused_by_the_tokenizer() -> None:
    from gateway.tokens import count_text_tokens

    assert count_text_tokens("m" * 1_000_000) == 4 * count_text_tokens("m" * 250_000)
    spaced = "hello world " * 100_000  # 1.2 M characters, cut at a space
    assert abs(count_text_tokens(spaced) - 2 * count_text_tokens("hello world " * 50_000)) <= 2
