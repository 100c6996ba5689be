"""Stable per-request placeholders: the same value gets the same `<TYPE_n>` token in every
message of a request, numbered left to right in the order values are first met.

The mapping is the only place the real values live. It is in memory, owned by one request,
never serialised, never logged (its repr shows counts only), and `purge()` empties it when
the request ends.
"""

from __future__ import annotations

import re
import unicodedata

from gateway.pii.policy import NATIONAL_ID_TYPES

# Identifiers written with or without spaces / hyphens / case differences are one value:
# "SE45 5000 …" and "se4550000…" must share a token, or the model sees two accounts.
_COMPACT_TYPES = frozenset(
    {
        "IBAN_CODE",
        "CREDIT_CARD",
        "PHONE_NUMBER",
    }
    | NATIONAL_ID_TYPES
)

# The placeholder format, defined here only: `<TYPE_n>` for a pseudonym (restorable),
# `<TYPE>` for a redaction; and a trailing fragment that may still become one.
PLACEHOLDER_PATTERN = re.compile(r"<([A-Z][A-Z0-9_]*?)_(\d+)>")
PARTIAL_PLACEHOLDER_TAIL = re.compile(r"<[A-Z0-9_]*\Z")


def placeholder(entity_type: str, number: int | None = None) -> str:
    """`<TYPE_n>` (the n-th value of that type in a request), or `<TYPE>` for a redaction."""
    return f"<{entity_type}>" if number is None else f"<{entity_type}_{number}>"


def normalise_value(entity_type: str, value: str) -> str:
    value = unicodedata.normalize("NFC", value).strip()
    if entity_type in _COMPACT_TYPES:
        compact = re.sub(r"[\s\-+./()]", "", value).upper()
        if entity_type.startswith("SE_") and len(compact) == 12:
            compact = compact[2:]  # 19811218-9876 and 811218-9876 are one person
        return compact
    if entity_type == "EMAIL_ADDRESS":
        return value.lower()
    return value


class Pseudonymizer:
    """(entity type, normalised value) -> `<TYPE_n>`, and the reverse for rehydration."""

    __slots__ = ("_token_by_key", "_value_by_token", "_count_by_type", "_purged")

    def __init__(self) -> None:
        self._token_by_key: dict[tuple[str, str], str] = {}
        self._value_by_token: dict[str, str] = {}
        self._count_by_type: dict[str, int] = {}
        self._purged = False

    def token_for(self, entity_type: str, value: str) -> str:
        if self._purged:
            raise RuntimeError("this request's PII mapping was purged")
        key = (entity_type, normalise_value(entity_type, value))
        token = self._token_by_key.get(key)
        if token is None:
            number = self._count_by_type.get(entity_type, 0) + 1
            self._count_by_type[entity_type] = number
            token = placeholder(entity_type, number)
            self._token_by_key[key] = token
            # The first spelling met is the one restored in the answer.
            self._value_by_token[token] = value
        return token

    def value_for(self, token: str) -> str | None:
        return self._value_by_token.get(token)

    def entries(self) -> tuple[tuple[str, str], ...]:
        """(entity type, value) pairs, for the evaluation command. Values: keep in memory."""
        return tuple(
            (token[1 : token.rindex("_")], value) for token, value in self._value_by_token.items()
        )

    @property
    def tokens(self) -> tuple[str, ...]:
        return tuple(self._value_by_token)

    @property
    def longest_token_chars(self) -> int:
        return max((len(token) for token in self._value_by_token), default=0)

    def __len__(self) -> int:
        return len(self._value_by_token)

    def purge(self) -> None:
        """Forget every value. Called when the request ends, success or not."""
        self._token_by_key.clear()
        self._value_by_token.clear()
        self._count_by_type.clear()
        self._purged = True

    def __repr__(self) -> str:  # never the values: this object may end up in a traceback
        return f"Pseudonymizer(tokens={len(self._value_by_token)}, purged={self._purged})"
