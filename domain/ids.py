"""Identity rules. Aggregate ids derived from natural keys make retries idempotent: a second
attempt to create the same thing is "already exists", never a second one."""

from __future__ import annotations

import hashlib
import secrets
from functools import lru_cache
from uuid import UUID, uuid5

from domain.vocabulary import Mode

NAMESPACE = UUID("6f1d7c36-2f4b-4a8e-9f0c-5b7f0c1e2a90")
REQUEST_ID_PREFIX = "lg_req_"
LIVE_KEY_PREFIX = "lg_live_"
TEST_KEY_PREFIX = "lg_test_"


# A name-based id (uuid5: a SHA-1 and a UUID built in Python, ~3 µs) is derived several times
# per request for the same few projects, keys and models: remembered, bounded.
IDS_CACHED_MAX = 16_384
derived_id = lru_cache(maxsize=IDS_CACHED_MAX)(uuid5)

MODE_LIVE = Mode.LIVE.value
MODE_TEST = Mode.TEST.value  # lg_test_ keys: simulated upstream, a separate test balance


def account_id(project_id: UUID, mode: str = MODE_LIVE) -> UUID:
    """A project's live account, or with mode "test" its separate test account (test-mode
    keys are charged there; it never holds or moves real money)."""
    if mode == MODE_TEST:
        return derived_id(NAMESPACE, f"test-account:{project_id}")
    return derived_id(NAMESPACE, f"account:{project_id}")


def key_mode(key_prefix: str) -> str:
    return MODE_TEST if key_prefix.startswith(TEST_KEY_PREFIX) else MODE_LIVE


def api_key_id(key_hash: str) -> UUID:
    return derived_id(NAMESPACE, f"api-key:{key_hash}")


def request_aggregate_id(request_id: str) -> UUID:
    return uuid5(NAMESPACE, f"request:{request_id}")


def idempotent_request_id(project_id: UUID, idempotency_key: str) -> str:
    digest = hashlib.sha256(f"{project_id}:{idempotency_key}".encode()).hexdigest()[:24]
    return REQUEST_ID_PREFIX + digest


def price_book_id(model: str, project_id: UUID | str | None = None) -> UUID:
    """A shipped model's price book, or with `project_id` that project's own book for its
    custom model of that name (price identity includes the project for custom models)."""
    if project_id is not None:
        return derived_id(NAMESPACE, f"price-book:project:{project_id}:{model}")
    return derived_id(NAMESPACE, f"price-book:{model}")


def fx_book_id(base: str, quote: str) -> UUID:
    return derived_id(NAMESPACE, f"fx-book:{base}:{quote}")


def new_request_id() -> str:
    return REQUEST_ID_PREFIX + secrets.token_hex(12)


def new_api_key(test: bool = False) -> str:
    return (TEST_KEY_PREFIX if test else LIVE_KEY_PREFIX) + secrets.token_urlsafe(32)


def hash_api_key(api_key: str) -> str:
    # Keys are 256-bit random strings, so an unsalted SHA-256 is not guessable; it lets the
    # gateway find a key by identity (api_key_id(hash)) without ever storing the key.
    return hashlib.sha256(api_key.encode()).hexdigest()


def event_id(originator_id: UUID, originator_version: int) -> str:
    return f"{originator_id}:{originator_version}"
