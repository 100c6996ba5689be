from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.pii.pseudonymize import Pseudonymizer
from gateway.pii.rehydrate import StreamRehydrator, rehydrate_text


def _mapping() -> Pseudonymizer:
    mapping = Pseudonymizer()
    mapping.token_for("PERSON", "Anna Svensson")
    mapping.token_for("PERSON", "Lars Berg")
    mapping.token_for("IBAN_CODE", "SE45 5000 0000 0583 9825 7466")
    mapping.token_for("EMAIL_ADDRESS", "anna@example.com")
    for number in range(3, 13):  # so <PERSON_1> is a prefix of <PERSON_12>
        mapping.token_for("PERSON", f"Person {number}")
    return mapping


ANSWER = (
    "Hej <PERSON_1>! I moved money from <IBAN_CODE_1> to <PERSON_12>'s account. "
    "Write to <EMAIL_ADDRESS_1> or ask <PERSON_2>.<PERSON_1>< PERSON_1> a<b <PERSON_99> "
    "x < y and <PERSON_1"
)


def _stream(pieces: list[str], mapping: Pseudonymizer) -> tuple[str, int]:
    rehydrator = StreamRehydrator(mapping)
    out, held_max = [], 0
    for piece in pieces:
        out.append(rehydrator.feed(piece))
        held_max = max(held_max, rehydrator.held_chars)
    out.append(rehydrator.flush())
    return "".join(out), held_max


def test_every_two_way_split_of_a_streamed_answer_restores_exactly_the_whole_answer() -> None:
    mapping = _mapping()
    expected = rehydrate_text(ANSWER, mapping)
    assert "Anna Svensson" in expected and "Person 12's" in expected
    for cut in range(len(ANSWER) + 1):
        restored, held_max = _stream([ANSWER[:cut], ANSWER[cut:]], mapping)
        assert restored == expected, cut
        assert held_max < mapping.longest_token_chars


def test_many_random_splits_restore_exactly_and_hold_back_less_than_one_token() -> None:
    mapping = _mapping()
    expected = rehydrate_text(ANSWER, mapping)
    generator = random.Random(20261121)
    for _ in range(3000):
        cuts = sorted(generator.sample(range(1, len(ANSWER)), generator.randint(1, 40)))
        pieces = [ANSWER[a:b] for a, b in zip([0, *cuts], [*cuts, len(ANSWER)], strict=True)]
        restored, held_max = _stream(pieces, mapping)
        assert restored == expected
        assert held_max < mapping.longest_token_chars


def test_one_character_at_a_time_restores_exactly() -> None:
    mapping = _mapping()
    assert _stream(list(ANSWER), mapping)[0] == rehydrate_text(ANSWER, mapping)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "<PERSON_1>",
                "<PERSON_12>",
                "<IBAN_CODE_1>",
                "<",
                ">",
                "_",
                "1",
                "A",
                "P",
                "text ",
                "<PERSON_",
                "é",
                "\n",
            ]
        ),
        max_size=30,
    ),
    st.data(),
)
def test_any_text_any_split_restores_like_the_whole_text_does(parts: list[str], data) -> None:
    mapping = _mapping()
    text = "".join(parts)
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(text)), max_size=10))))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    assert _stream(pieces, mapping)[0] == rehydrate_text(text, mapping)


def test_the_first_token_is_not_delayed() -> None:
    rehydrator = StreamRehydrator(_mapping())
    assert rehydrator.feed("Hello") == "Hello"
    assert rehydrator.feed(" there, <PER") == " there, "
    assert rehydrator.feed("SON_1> how") == "Anna Svensson how"


def test_a_lone_angle_bracket_run_longer_than_any_token_is_released() -> None:
    mapping = _mapping()
    rehydrator = StreamRehydrator(mapping)
    long_run = "<" + "A" * mapping.longest_token_chars
    assert rehydrator.feed(long_run) == long_run


def test_with_nothing_pseudonymized_text_passes_straight_through() -> None:
    rehydrator = StreamRehydrator(Pseudonymizer())
    assert rehydrator.feed("a <PERS") == "a <PERS"
    assert rehydrator.held_chars == 0


def test_streamed_json_arguments_get_values_escaped_for_json() -> None:
    from gateway.pii.rehydrate import json_string_escape

    mapping = Pseudonymizer()
    mapping.token_for("PERSON", 'Anna "Annie" Svensson\\')
    rehydrator = StreamRehydrator(mapping, escape=json_string_escape)
    parts = ['{"who": "<PER', 'SON_1>"}']
    text = "".join(rehydrator.feed(p) for p in parts) + rehydrator.flush()
    import json

    assert json.loads(text) == {"who": 'Anna "Annie" Svensson\\'}
