"""Streaming output firewall: stop a streamed answer the moment the model emits PII of a
blocked type, before that value reaches the client.

Text is released to the client only after it has been checked. To catch a value that is
split across chunks ("SE45 5000" … "0000 0583 …") the firewall holds back the trailing run
that could still grow into one — the unfinished last word plus any trailing run of words
that carry digits or '@' (IBANs, cards, phone numbers and IDs are written in groups) — and
checks it together with a bounded look-back of what was already released. Both the hold
and the look-back are bounded, so memory and per-chunk work stay flat however long the
answer is, and ordinary prose is released with at most one word of delay.

Run the firewall on the model's raw text (before rehydration): placeholders are not PII,
and the user's own values restored by rehydration are not the model leaking anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from domain.errors import GuardrailViolation
from gateway.pii.engine import NER_ENTITY_TYPES, PiiScreener

FIREWALL_SCANNER = "output_firewall"

# A "word" that may be one group of an identifier: it has a digit or an '@'.
_ID_GROUP = re.compile(r"[^\s]*[\d@][^\s]*")
_CAPITALISED = re.compile(r"[^\W\d_][\w'’\-]*", re.UNICODE)


@dataclass(frozen=True, slots=True)
class FirewallViolation:
    entity_types: tuple[str, ...]
    scanner: str = FIREWALL_SCANNER

    def as_error(self) -> GuardrailViolation:
        return GuardrailViolation(
            "the answer contained personal data this policy blocks: "
            + ", ".join(self.entity_types),
            scanner=self.scanner,
            entity_types=self.entity_types,
        )


@dataclass(frozen=True, slots=True)
class FirewallStep:
    released: str  # text checked and safe to send on
    violation: FirewallViolation | None = None


class StreamFirewall:
    """`feed(text)` / `flush()` return a FirewallStep. After a violation, nothing more is
    released: the caller sends an SSE error frame and cancels the upstream call.

    CPU-bound (pattern matching, and spaCy when a NER type is blocked): call `feed` from a
    worker thread (`await screener.run_for_stream(firewall.feed, text)`).
    """

    def __init__(
        self,
        screener: PiiScreener,
        blocked_entity_types: frozenset[str],
        *,
        language: str = "en",
        lookback_chars: int = 160,
        hold_chars_max: int = 96,
        ner_check_chars_min: int = 48,
        score_threshold: float = 0.4,
    ) -> None:
        if hold_chars_max <= 0 or lookback_chars < 0:
            raise ValueError("hold_chars_max must be positive and lookback_chars non-negative")
        self._screener = screener
        self.blocked_entity_types = frozenset(blocked_entity_types)
        self._language = language
        self._lookback_chars = lookback_chars
        self._hold_chars_max = hold_chars_max
        self._ner_check_chars_min = ner_check_chars_min
        self._score_threshold = score_threshold
        self._uses_ner = bool(self.blocked_entity_types & NER_ENTITY_TYPES)
        self._released_tail = ""  # the look-back: last released text, for split values
        self._pending = ""  # received, not yet released
        self._unchecked_chars = 0
        self.violation: FirewallViolation | None = None
        self.checks_run = 0

    @property
    def held_chars(self) -> int:
        return len(self._pending)

    def feed(self, text: str) -> FirewallStep:
        if self.violation is not None:
            return FirewallStep("", self.violation)
        if not self.blocked_entity_types:
            return FirewallStep(text)
        self._pending += text
        self._unchecked_chars += len(text)
        if self._uses_ner and self._unchecked_chars < self._ner_check_chars_min:
            # A spaCy pass per token would cost more than the stream; check every N chars.
            return FirewallStep("")
        return self._check_and_release(final=False)

    def flush(self) -> FirewallStep:
        if self.violation is not None:
            return FirewallStep("", self.violation)
        if not self.blocked_entity_types:
            return FirewallStep("")
        return self._check_and_release(final=True)

    def _check_and_release(self, *, final: bool) -> FirewallStep:
        window = self._released_tail + self._pending
        self.checks_run += 1
        self._unchecked_chars = 0
        if self._uses_ner:
            findings = self._screener.analyze(
                window, self._language, self.blocked_entity_types, self._score_threshold
            )
        else:
            findings = self._screener.analyze_patterns(
                window, self._language, self.blocked_entity_types, self._score_threshold
            )
        found = sorted(
            {f.entity_type for f in findings if f.entity_type in self.blocked_entity_types}
        )
        if found:
            self.violation = FirewallViolation(tuple(found))
            self._pending = ""
            return FirewallStep("", self.violation)
        hold_from = len(self._pending) if final else self._hold_start(self._pending)
        released, self._pending = self._pending[:hold_from], self._pending[hold_from:]
        if released:
            self._released_tail = (self._released_tail + released)[-self._lookback_chars :]
        return FirewallStep(released)

    def _hold_start(self, pending: str) -> int:
        """Where the trailing could-still-grow run starts (bounded by hold_chars_max)."""
        index = len(pending)
        # The last word is unfinished until whitespace follows it.
        while index > 0 and not pending[index - 1].isspace():
            index -= 1
        # Walk back over earlier words that look like identifier groups (or, when names are
        # blocked, capitalised words), separated by single spaces.
        while index > 0:
            before = pending[:index]
            stripped = before.rstrip()
            if len(before) - len(stripped) != 1:
                break  # two spaces or a newline: a new thought, not a continuation
            word_start = len(stripped)
            while word_start > 0 and not stripped[word_start - 1].isspace():
                word_start -= 1
            word = stripped[word_start:]
            if not (
                _ID_GROUP.fullmatch(word)
                or (self._uses_ner and _CAPITALISED.fullmatch(word) and word[0].isupper())
            ):
                break
            index = word_start
        return max(index, len(pending) - self._hold_chars_max)
