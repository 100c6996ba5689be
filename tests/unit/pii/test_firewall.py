from __future__ import annotations

import random
import re

from gateway.pii.engine import PiiScreener
from gateway.pii.firewall import StreamFirewall
from gateway.pii.policy import parse_pii_policy
from gateway.pii.pseudonymize import Pseudonymizer
from gateway.pii.streaming import PiiStreamFilter

IBAN = "SE45 5000 0000 0583 9825 7466"
ANSWER_WITH_IBAN = f"Sure! The account is {IBAN} and the owner is happy. Anything else?"
CLEAN_ANSWER = "Sure! The weather in the report is mild, 21 degrees, with 3 showers expected."


def _run(firewall: StreamFirewall, pieces: list[str]) -> tuple[str, object]:
    released = []
    for piece in pieces:
        step = firewall.feed(piece)
        released.append(step.released)
        if step.violation:
            return "".join(released), step.violation
    step = firewall.flush()
    released.append(step.released)
    return "".join(released), step.violation


def _random_pieces(text: str, generator: random.Random) -> list[str]:
    cuts = sorted(generator.sample(range(1, len(text)), generator.randint(1, 25)))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


def test_a_blocked_iban_is_caught_before_any_complete_group_of_it_is_released(
    screener: PiiScreener,
) -> None:
    generator = random.Random(7)
    for _ in range(200):
        firewall = StreamFirewall(screener, frozenset({"IBAN_CODE"}))
        released, violation = _run(firewall, _random_pieces(ANSWER_WITH_IBAN, generator))
        assert violation is not None and violation.entity_types == ("IBAN_CODE",)
        assert "5000" not in released and "SE45" not in released
        assert released == ANSWER_WITH_IBAN[: len(released)]


def test_a_blocked_value_split_into_single_characters_is_still_caught(
    screener: PiiScreener,
) -> None:
    firewall = StreamFirewall(screener, frozenset({"IBAN_CODE", "CREDIT_CARD"}))
    released, violation = _run(firewall, list("Card: 4111 1111 1111 1111, done."))
    assert violation is not None and violation.entity_types == ("CREDIT_CARD",)
    assert "4111" not in released


def test_a_clean_answer_flows_through_whole_and_in_order(screener: PiiScreener) -> None:
    generator = random.Random(11)
    for _ in range(100):
        firewall = StreamFirewall(
            screener, frozenset({"IBAN_CODE", "CREDIT_CARD", "SE_PERSONNUMMER"})
        )
        released, violation = _run(firewall, _random_pieces(CLEAN_ANSWER, generator))
        assert violation is None and released == CLEAN_ANSWER


def test_prose_is_released_with_at_most_the_unfinished_word_held_back(
    screener: PiiScreener,
) -> None:
    firewall = StreamFirewall(screener, frozenset({"IBAN_CODE"}))
    assert firewall.feed("Hello there ").released == "Hello there "
    assert firewall.feed("my frie").released == "my "
    assert firewall.held_chars == len("frie")


def test_the_hold_back_is_bounded_even_for_a_long_run_of_digits(screener: PiiScreener) -> None:
    firewall = StreamFirewall(screener, frozenset({"IBAN_CODE"}), hold_chars_max=32)
    for _ in range(50):
        firewall.feed("1234 ")
        assert firewall.held_chars <= 32


def test_after_a_violation_nothing_more_is_released(screener: PiiScreener) -> None:
    firewall = StreamFirewall(screener, frozenset({"IBAN_CODE"}))
    _run(firewall, [ANSWER_WITH_IBAN])
    assert firewall.feed(" more text ").released == ""
    assert firewall.feed(" more text ").violation is not None


def test_the_violation_error_names_types_and_the_firewall_never_values(
    screener: PiiScreener,
) -> None:
    firewall = StreamFirewall(screener, frozenset({"IBAN_CODE"}))
    _, violation = _run(firewall, [ANSWER_WITH_IBAN])
    error = violation.as_error()
    assert error.code == "guardrail_violation"
    assert error.details == {"scanner": "output_firewall", "entity_types": ["IBAN_CODE"]}
    assert IBAN not in str(error)


def test_a_blocked_person_name_is_caught_by_the_ner_check(screener: PiiScreener) -> None:
    firewall = StreamFirewall(screener, frozenset({"PERSON"}))
    text = "The file was signed by Anna Svensson yesterday afternoon at the main office."
    released, violation = _run(firewall, re.findall(r"\S+\s*", text))
    assert violation is not None and violation.entity_types == ("PERSON",)
    assert "Svensson" not in released


async def test_stream_filter_checks_raw_text_then_rehydrates(screener: PiiScreener) -> None:
    mapping = Pseudonymizer()
    mapping.token_for("IBAN_CODE", IBAN)  # the user's own IBAN, pseudonymized on the way in
    policy = parse_pii_policy(
        {"rehydrate_response": True, "block_output_entity_types": ["IBAN_CODE"]}
    )
    stream = PiiStreamFilter(screener, policy, mapping)
    out = []
    for piece in ["Your account <IBAN", "_CODE_1> is ", "verified."]:
        step = await stream.feed(piece)
        assert (
            step.violation is None
        )  # the placeholder is not PII; the restored value is the user's
        out.append(step.text)
    out.append((await stream.flush()).text)
    assert "".join(out) == f"Your account {IBAN} is verified."

    leaking = PiiStreamFilter(screener, policy, mapping)
    step = await leaking.feed("Another account: DE89 3704 0044 0532 0130 00 ")
    assert step.violation is not None and "3704" not in step.text


async def test_stream_chunks_do_not_queue_behind_a_long_screening(screener: PiiScreener) -> None:
    import asyncio
    import time

    long_body = {"messages": [{"role": "user", "content": "Anna Svensson met Lars Berg. " * 400}]}
    policy = parse_pii_policy({"block_output_entity_types": ["IBAN_CODE"]})
    screenings = [asyncio.create_task(screener.screen(long_body, policy)) for _ in range(2)]
    await asyncio.sleep(0.01)  # both screening threads are busy now
    stream = PiiStreamFilter(screener, policy, Pseudonymizer())
    started = time.perf_counter()
    step = await stream.feed("Hello there ")
    chunk_ms = (time.perf_counter() - started) * 1000
    await asyncio.gather(*screenings)
    assert step.text == "Hello there "
    assert chunk_ms < 100, chunk_ms  # a screening of this prompt takes several hundred ms
