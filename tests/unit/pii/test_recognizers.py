from __future__ import annotations

import pytest

from gateway.pii.checksums import (
    de_tax_id_valid,
    es_dni_valid,
    es_nie_valid,
    fr_nir_valid,
    iban_valid,
    it_fiscal_code_valid,
    luhn_valid,
    swedish_id_kind,
)
from gateway.pii.recognizers import CaseRobustIbanRecognizer


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("811218-9876", "personnummer"),
        ("8112189876", "personnummer"),
        ("19811218-9876", "personnummer"),
        ("198112189876", "personnummer"),
        ("811218+9876", "personnummer"),  # '+' = 100 years or older, same digits
        ("701063-2391", "samordningsnummer"),  # day 63 = 3rd + 60
        ("811218-9875", None),  # Luhn fails
        ("811318-9871", None),  # month 13
        ("810230-0000", None),  # 30 February (Luhn aside)
        ("19811218+9876", None),  # '+' with a written century is contradictory
        ("12345", None),
    ],
)
def test_swedish_ids_need_a_real_date_and_a_luhn_check_digit(text: str, kind: str | None) -> None:
    assert swedish_id_kind(text) == kind


def test_a_samordningsnummer_on_an_impossible_day_is_rejected() -> None:
    # day 92 = 32nd + 60: no such date, whatever the check digit
    candidates = [f"7010922{d}{c}" for d in range(10) for c in range(10)]
    assert all(swedish_id_kind(c[:6] + "-" + c[6:]) is None for c in candidates)


def test_luhn_accepts_known_card_and_rejects_a_changed_digit() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")


@pytest.mark.parametrize(
    "text",
    [
        "SE45 5000 0000 0583 9825 7466",
        "se4550000000058398257466",
        "DE89 3704 0044 0532 0130 00",
        "GB82 WEST 1234 5698 7654 32",
        "fr14 2004 1010 0505 0001 3m02 606",
    ],
)
def test_iban_checksum_is_case_robust(text: str) -> None:
    assert iban_valid(text)


@pytest.mark.parametrize(
    "text", ["SE45 5000 0000 0583 9825 7467", "DE89370400440532013001", "XX00"]
)
def test_iban_with_a_wrong_checksum_or_length_is_rejected(text: str) -> None:
    assert not iban_valid(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Pay to SE45 5000 0000 0583 9825 7466 today please", "SE45 5000 0000 0583 9825 7466"),
        ("iban:se4550000000058398257466, thanks", "se4550000000058398257466"),
        ("(DE89370400440532013000)", "DE89370400440532013000"),
    ],
)
def test_iban_recognizer_finds_an_iban_next_to_words_in_any_case(text: str, expected: str) -> None:
    results = CaseRobustIbanRecognizer().analyze(text, ["IBAN_CODE"])
    assert [text[r.start : r.end] for r in results] == [expected]


def test_iban_recognizer_ignores_a_longer_alphanumeric_run() -> None:
    assert CaseRobustIbanRecognizer().analyze("SE4550000000058398257466X", ["IBAN_CODE"]) == []


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("86095742719", True),
        ("65929970489", True),
        ("12345678903", False),
        ("86095742718", False),
        ("01234567890", False),
        ("11111111111", False),
    ],
)
def test_german_tax_id_checks_digit_structure_and_iso7064(text: str, valid: bool) -> None:
    assert de_tax_id_valid(text) is valid


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("RSSMRA85T10A562S", True),
        ("rssmra85t10a562s", True),
        ("RSSMRA85T10A562T", False),
        ("RSSMRA85Z10A562S", False),
        ("RSSMRA85T99A562S", False),
    ],
)
def test_italian_fiscal_code_checks_month_day_and_control_letter(text: str, valid: bool) -> None:
    assert it_fiscal_code_valid(text) is valid


def test_italian_fiscal_code_accepts_omocodia_substitution_with_its_own_control_letter() -> None:
    # Last digit 2 -> N (omocodia); the control letter is recomputed over the new string.
    from gateway.pii.checksums import _CF_ODD

    body = "RSSMRA85T10A56N"
    total = sum(
        _CF_ODD[c] if i % 2 == 0 else (int(c) if c.isdigit() else ord(c) - 65)
        for i, c in enumerate(body)
    )
    assert it_fiscal_code_valid(body + chr(65 + total % 26))
    assert not it_fiscal_code_valid(body + chr(65 + (total + 1) % 26))


@pytest.mark.parametrize(
    ("text", "valid"),
    [("12345678Z", True), ("12345678-z", True), ("12345678A", False), ("1234567Z", False)],
)
def test_spanish_dni_letter_is_mod_23(text: str, valid: bool) -> None:
    assert es_dni_valid(text) is valid


@pytest.mark.parametrize(
    ("text", "valid"),
    [("X1234567L", True), ("Y1234567X", True), ("X1234567A", False), ("W1234567L", False)],
)
def test_spanish_nie_maps_xyz_to_digits_before_mod_23(text: str, valid: bool) -> None:
    assert es_nie_valid(text) is valid


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("1 84 12 76 451 089 46", True),
        ("184127645108946", True),
        ("2 69 05 49 588 157 80", True),
        ("1 84 12 76 451 089 47", False),
        ("1 84 13 76 451 089 46", False),
    ],
)
def test_french_nir_key_is_97_minus_mod_97(text: str, valid: bool) -> None:
    # month 13 is not a valid NIR month
    assert fr_nir_valid(text) is valid


def test_french_nir_for_corsica_counts_2a_as_19() -> None:
    body = "184122A451089"  # sex 1, 1984, December, department 2A, commune 451, order 089
    key = 97 - (int(body.replace("A", "0")) - 1_000_000) % 97
    assert fr_nir_valid(f"{body}{key:02d}")
    assert not fr_nir_valid(f"{body}{(key % 97) + 1:02d}")
