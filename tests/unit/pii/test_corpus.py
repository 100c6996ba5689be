from __future__ import annotations

from gateway.pii.engine import PiiScreener
from gateway.pii.evaluate import DEFAULT_CORPUS, evaluate, format_table, load_corpus
from gateway.pii.policy import NATIONAL_ID_TYPES

CHECKSUM_AND_PATTERN_TYPES = {
    "IBAN_CODE",
    "CREDIT_CARD",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "IP_ADDRESS",
} | NATIONAL_ID_TYPES


def test_the_corpus_covers_six_languages_and_the_tricky_cases() -> None:
    cases = load_corpus(DEFAULT_CORPUS)
    assert {c.language for c in cases} == {"en", "fr", "de", "it", "sv", "es"}
    tags = {tag for c in cases for tag in c.tags}
    assert {"possessive", "tool-arguments", "iban-next-to-words", "fails-checksum"} <= tags


async def test_pattern_and_checksum_types_are_exact_on_the_corpus(screener: PiiScreener) -> None:
    evaluation = await evaluate(screener, load_corpus(DEFAULT_CORPUS))
    for entity_type in CHECKSUM_AND_PATTERN_TYPES:
        score = evaluation.by_type[entity_type]
        assert (score.precision, score.recall) == (1.0, 1.0), entity_type


async def test_overall_quality_does_not_regress_below_what_was_measured(
    screener: PiiScreener,
) -> None:
    # Measured 2026-11-21 with en_core_web_sm + fr_core_news_sm: micro P 0.98, R 0.88;
    # NER types are the weak part (small models, no de/it/sv/es model). Floors leave a margin.
    evaluation = await evaluate(screener, load_corpus(DEFAULT_CORPUS))
    total = evaluation.total()
    assert total.precision >= 0.9 and total.recall >= 0.8, format_table(evaluation)
    assert evaluation.hidden_share >= 0.85
