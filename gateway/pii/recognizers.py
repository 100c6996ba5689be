"""Custom recognizers for the European identifiers a customer expects, each checksum-validated.

The validators are plain functions (testable without Presidio); the recognizer classes wrap
them for the Presidio analyzer. A match whose checksum fails is dropped, not down-scored:
"a number that looks like an ID" must not be pseudonymized as one, and a finding we keep
is then certain enough to score 1.0 (Presidio's convention for validated matches).

Pattern recognizers are registered for every supported language, not only their country's:
a Swedish personnummer in an English message is still a personnummer, and the checksums
keep precision high. Language chooses the NER model and the context words.
"""

from __future__ import annotations

import re

from presidio_analyzer import (
    AnalysisExplanation,
    EntityRecognizer,
    Pattern,
    PatternRecognizer,
    RecognizerResult,
)
from presidio_analyzer.nlp_engine import NlpArtifacts
from presidio_analyzer.predefined_recognizers import PhoneRecognizer

from gateway.pii.checksums import (  # the one home of the checksums
    _IBAN_LENGTH_BY_COUNTRY,
    SE_PERSONNUMMER,
    SE_SAMORDNINGSNUMMER,
    de_tax_id_valid,
    es_dni_valid,
    es_nie_valid,
    fr_nir_valid,
    iban_valid,
    it_fiscal_code_valid,
    swedish_id_kind,
)

# --------------------------------------------------------------------------- recognizers


class _ChecksumRecognizer(PatternRecognizer):
    """A pattern recognizer whose matches must pass `_check` (else they are dropped)."""

    ENTITY = ""
    PATTERNS: tuple[tuple[str, str, float], ...] = ()
    CONTEXT: tuple[str, ...] = ()

    def __init__(self, supported_language: str = "en") -> None:
        super().__init__(
            supported_entity=self.ENTITY,
            patterns=[Pattern(name, regex, score) for name, regex, score in self.PATTERNS],
            context=list(self.CONTEXT),
            supported_language=supported_language,
            name=f"{type(self).__name__}_{supported_language}",
        )

    def _check(self, text: str) -> bool:
        raise NotImplementedError

    def validate_result(self, pattern_text: str) -> bool:
        # False drops the match; True sets its score to the maximum (validated).
        return self._check(pattern_text)


_SE_ID_REGEX = r"(?<![\d\-+])(?:(?:19|20)\d{6}[-]?|\d{6}[-+]?)\d{4}(?![\d])"


class SwedishPersonnummerRecognizer(_ChecksumRecognizer):
    ENTITY = "SE_PERSONNUMMER"
    PATTERNS = (("se_personnummer", _SE_ID_REGEX, 0.5),)
    CONTEXT = ("personnummer", "personnr", "pnr", "swedish", "personal identity number")

    def _check(self, text: str) -> bool:
        return swedish_id_kind(text) == SE_PERSONNUMMER


class SwedishSamordningsnummerRecognizer(_ChecksumRecognizer):
    ENTITY = "SE_SAMORDNINGSNUMMER"
    PATTERNS = (("se_samordningsnummer", _SE_ID_REGEX, 0.5),)
    CONTEXT = ("samordningsnummer", "coordination number", "samordning")

    def _check(self, text: str) -> bool:
        return swedish_id_kind(text) == SE_SAMORDNINGSNUMMER


class GermanTaxIdRecognizer(_ChecksumRecognizer):
    ENTITY = "DE_TAX_ID"
    # Written as 11 digits or grouped "12 345 678 903". Only ~1 in 10 random numbers passes
    # the check, so without context the base score stays below the medium threshold's reach
    # only until validation lifts it: validation is what makes it a finding.
    PATTERNS = (("de_tax_id", r"(?<![\d\-])[1-9]\d(?: ?\d{3}){3}(?![\d\-])", 0.3),)
    CONTEXT = ("steuer", "steuerid", "steuer-id", "identifikationsnummer", "idnr", "tin", "tax")

    def _check(self, text: str) -> bool:
        return de_tax_id_valid(text)


class ItalianFiscalCodeRecognizer(_ChecksumRecognizer):
    ENTITY = "IT_FISCAL_CODE"
    PATTERNS = (
        (
            "it_fiscal_code",
            r"\b[A-Za-z]{6}[0-9LMNPQRSTUVlmnpqrstuv]{2}[A-Za-z][0-9LMNPQRSTUVlmnpqrstuv]{2}"
            r"[A-Za-z][0-9LMNPQRSTUVlmnpqrstuv]{3}[A-Za-z]\b",
            0.5,
        ),
    )
    CONTEXT = ("codice fiscale", "fiscale", "cf", "tax code")

    def _check(self, text: str) -> bool:
        return it_fiscal_code_valid(text)


class SpanishDniRecognizer(_ChecksumRecognizer):
    ENTITY = "ES_DNI"
    PATTERNS = (("es_dni", r"\b\d{8}-?[A-Za-z]\b", 0.5),)
    CONTEXT = ("dni", "nif", "documento", "identidad")

    def _check(self, text: str) -> bool:
        return es_dni_valid(text)


class SpanishNieRecognizer(_ChecksumRecognizer):
    ENTITY = "ES_NIE"
    PATTERNS = (("es_nie", r"\b[XYZxyz]-?\d{7}-?[A-Za-z]\b", 0.5),)
    CONTEXT = ("nie", "extranjero", "identidad")

    def _check(self, text: str) -> bool:
        return es_nie_valid(text)


class FrenchNirRecognizer(_ChecksumRecognizer):
    ENTITY = "FR_NIR"
    PATTERNS = (
        (
            "fr_nir",
            r"(?<![\dA-Za-z])[1-478] ?\d{2} ?\d{2} ?(?:\d{2}|2[ABab]) ?\d{3} ?\d{3} ?\d{2}(?![\d])",
            0.5,
        ),
    )
    CONTEXT = ("sécurité sociale", "securite sociale", "nir", "insee", "social security")

    def _check(self, text: str) -> bool:
        return fr_nir_valid(text)


class CaseRobustIbanRecognizer(EntityRecognizer):
    """IBANs in any case, grouped by spaces or not, next to any word.

    Presidio's bundled recognizer (ignore-case regex) lets a trailing lowercase word be
    swallowed into the candidate ("… 7466 today"), which then fails the checksum and the
    IBAN is missed. Here the country's IBAN length decides where the value ends, so the
    next word is never part of the candidate."""

    ENTITY = "IBAN_CODE"
    _START = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2})(\d{2})")

    def __init__(self, supported_language: str = "en") -> None:
        self.display_name = f"CaseRobustIbanRecognizer_{supported_language}"
        super().__init__(
            supported_entities=[self.ENTITY],
            supported_language=supported_language,
            name=self.display_name,
            context=["iban", "konto", "account", "compte", "conto", "cuenta", "kontonummer"],
        )

    def load(self) -> None:  # nothing to load: pure Python
        return None

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        results: list[RecognizerResult] = []
        for match in self._START.finditer(text):
            length = _IBAN_LENGTH_BY_COUNTRY.get(match.group(1).upper())
            if length is None:
                continue
            end = self._consume(text, match.start(), length)
            if end is None or not iban_valid(text[match.start() : end]):
                continue
            results.append(
                RecognizerResult(
                    entity_type=self.ENTITY,
                    start=match.start(),
                    end=end,
                    score=EntityRecognizer.MAX_SCORE,
                    analysis_explanation=AnalysisExplanation(
                        recognizer=self.display_name,
                        original_score=EntityRecognizer.MAX_SCORE,
                        validation_result=True,
                        textual_explanation="country length and mod-97 checksum",
                    ),
                    recognition_metadata={
                        RecognizerResult.RECOGNIZER_NAME_KEY: self.display_name,
                        RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                    },
                )
            )
        return results

    @staticmethod
    def _consume(text: str, start: int, length: int) -> int | None:
        """Index just after `length` alphanumerics from `start`, allowing single spaces or
        hyphens between them; None if the value is cut short or runs on into more
        alphanumerics (then it is a longer token, not this IBAN)."""
        taken, index = 0, start
        while index < len(text) and taken < length:
            char = text[index]
            if char.isascii() and char.isalnum():
                taken += 1
                index += 1
            elif char in " -" and taken > 0 and index + 1 < len(text) and text[index + 1].isalnum():
                index += 1
            else:
                break
        if taken != length:
            return None
        if index < len(text) and text[index].isascii() and text[index].isalnum():
            return None
        return index


CHECKSUM_RECOGNIZER_CLASSES: tuple[type[EntityRecognizer], ...] = (
    SwedishPersonnummerRecognizer,
    SwedishSamordningsnummerRecognizer,
    GermanTaxIdRecognizer,
    ItalianFiscalCodeRecognizer,
    SpanishDniRecognizer,
    SpanishNieRecognizer,
    FrenchNirRecognizer,
    CaseRobustIbanRecognizer,
)


class EuropeanPhoneRecognizer(PhoneRecognizer):
    """Presidio's phonenumbers-based recognizer for European regions, with one change:
    a number written without '+', '00' or a trunk '0' is scored below the medium
    threshold unless a context word ("phone", "tel", "ring") lifts it. Otherwise every
    9–12 digit ID that fails its own checksum ("811218-9875") reappears as a phone."""

    UNANCHORED_SCORE = 0.3

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        results = super().analyze(text, entities, nlp_artifacts)  # type: ignore[arg-type]
        for result in results:
            if text[result.start] not in "+0(":
                result.score = min(result.score, self.UNANCHORED_SCORE)
                if result.analysis_explanation is not None:
                    result.analysis_explanation.set_improved_score(result.score)
        return results
