"""The exact response cache: a repeated chat or embeddings request answered from an entry
an operator cannot read.

Per request (headers): `X-LG-Use-Cache` (or Braintrust's `x-bt-use-cache`) `auto` (default:
only when `temperature` is 0 or `seed` is set), `always`, `never`; `Cache-Control: no-cache`
skips the read, `no-store` the write; `X-LG-Cache-TTL` seconds (default and maximum 7 days).

Keys and secrecy. The cache key is the canonical JSON of what decides the answer: endpoint,
project, the effective tier's cache scope (domain/tiers.py), the resolved model set, the PII
policy, the stream flag and the screened body (placeholders, never raw PII). From the raw
API key presented (never stored) HKDF derives two keys: one keys the HMAC that names the
entry (the lookup id: entries cannot be correlated with prompts, nor across API keys), the
other, salted with the hash of the cache key, seals the entry with AES-256-GCM (the lookup id
as associated data, so an entry cannot be moved under another id). The store alone, or an
operator holding the database, holds ciphertext only.

The store is the read-model database's `lg_response_cache` table (migrations 0007): bounded
by `LEDGERGATE_RESPONSE_CACHE_ENTRIES_MAX` and `..._BYTES_MAX` (oldest evicted first) and
purged of expired entries on every write. Identical requests in flight in one process share
one upstream call (the first is the leader; the others wait for its entry).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

import anyio.to_thread
import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from domain.clock import Clock
from gateway.errors import GatewayError
from gateway.json_bytes import canonical_sha256
from gateway.providers.base import ChatStream, Usage
from gateway.validation import upstream_body_of
from projections.db import ReadStore, iso

log = logging.getLogger("ledgergate.response_cache")

MODE_AUTO, MODE_ALWAYS, MODE_NEVER = "auto", "always", "never"
MODES = (MODE_AUTO, MODE_ALWAYS, MODE_NEVER)
HIT, MISS, BYPASS = "hit", "miss", "bypass"
USAGE_SOURCE_CACHE = "cache"  # the ledger's usage of a hit: zero tokens, no provider called
TTL_S_MAX = 7 * 24 * 3600  # the bound: a week; also the default
ENTRIES_MAX_DEFAULT = 10_000
BYTES_MAX_DEFAULT = 64 * 1024 * 1024
ENTRY_BYTES_MAX = 1024 * 1024  # a larger answer is served but not cached
FOLLOWER_WAIT_S_MAX = 120.0  # an identical request waits this long for its leader at most
_LOOKUP_SALT = b"ledgergate response cache lookup v1"
_ENTRY_INFO = b"ledgergate response cache entry v1"
_NONCE_BYTES = 12


@dataclass(frozen=True)
class CacheOptions:
    """What the request's headers ask of the cache."""

    mode: str = MODE_AUTO
    read: bool = True
    write: bool = True
    ttl_s: int = TTL_S_MAX


def options_from(headers: Any) -> CacheOptions:
    """Parse the cache headers; a bad value is a 400 naming the header."""
    raw_mode = headers.get("x-lg-use-cache")
    param = "x-lg-use-cache"
    if raw_mode is None:
        raw_mode, param = headers.get("x-bt-use-cache"), "x-bt-use-cache"
    mode = MODE_AUTO if raw_mode is None else raw_mode.strip().lower()
    if mode not in MODES:
        raise GatewayError(
            "invalid_request", f"{param} must be one of {', '.join(MODES)}", param=param
        )
    directives = {
        part.strip().lower().split("=", 1)[0]
        for part in (headers.get("cache-control") or "").split(",")
    }
    ttl_s = TTL_S_MAX
    raw_ttl = headers.get("x-lg-cache-ttl")
    if raw_ttl is not None:
        text = raw_ttl.strip()
        if not text.isascii() or not text.isdigit() or not 0 < int(text) <= TTL_S_MAX:
            raise GatewayError(
                "invalid_request",
                f"x-lg-cache-ttl must be a whole number of seconds from 1 to {TTL_S_MAX}",
                param="x-lg-cache-ttl",
            )
        ttl_s = int(text)
    return CacheOptions(
        mode=mode,
        read=mode != MODE_NEVER and "no-cache" not in directives,
        write=mode != MODE_NEVER and "no-store" not in directives,
        ttl_s=ttl_s,
    )


def eligible(options: CacheOptions, body: dict[str, Any]) -> bool:
    """`auto` caches only deterministic requests: temperature 0 or a seed."""
    if options.mode == MODE_NEVER:
        return False
    if options.mode == MODE_ALWAYS:
        return True
    temperature = body.get("temperature")
    zero = (
        isinstance(temperature, int | float)
        and not isinstance(temperature, bool)
        and temperature == 0
    )
    return zero or body.get("seed") is not None


@dataclass
class CacheEntry:
    """A decrypted entry: what the origin request got from its provider (placeholders kept)."""

    origin_request_id: str
    model: str
    provider: str
    body: dict[str, Any] | None = None  # a chat.completion or an embeddings list
    chunks: list[dict[str, Any]] | None = None  # a stream's chunks, usage-free
    usage: dict[str, int] | None = None
    finish_reason: str | None = None


@dataclass
class CachePlan:
    """One request's use of the cache: its lookup id and entry key (derived, in memory)."""

    options: CacheOptions
    lookup_id: str
    entry_key: bytes = field(repr=False)
    outcome: str = BYPASS
    hit: CacheEntry | None = None
    leader_event: asyncio.Event | None = None

    @property
    def store_wanted(self) -> bool:
        return self.options.write and self.hit is None


def _derive(api_key: str, material: bytes) -> tuple[str, bytes]:
    secret = api_key.encode()
    lookup_key = HKDF(hashes.SHA256(), 32, salt=_LOOKUP_SALT, info=b"lookup").derive(secret)
    lookup_id = hmac.new(lookup_key, material, hashlib.sha256).hexdigest()
    entry_key = HKDF(
        hashes.SHA256(), 32, salt=hashlib.sha256(material).digest(), info=_ENTRY_INFO
    ).derive(secret)
    return lookup_id, entry_key


def seal(plan: CachePlan, entry: CacheEntry) -> str | None:
    plaintext = orjson.dumps(entry.__dict__)
    if len(plaintext) > ENTRY_BYTES_MAX:
        return None
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(plan.entry_key).encrypt(nonce, plaintext, plan.lookup_id.encode())
    return base64.b64encode(nonce + sealed).decode()


def unseal(plan: CachePlan, sealed: str) -> CacheEntry | None:
    raw = base64.b64decode(sealed)
    try:
        plaintext = AESGCM(plan.entry_key).decrypt(
            raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], plan.lookup_id.encode()
        )
    except Exception:  # a tampered or foreign entry is a miss, never an answer
        return None
    return CacheEntry(**orjson.loads(plaintext))


class ReplayStream(ChatStream):
    """A cached stream replayed chunk by chunk, with the origin's usage and finish reason:
    the route relays it exactly as it relays a provider's stream (PII filter included)."""

    def __init__(self, entry: CacheEntry) -> None:
        self._chunks = [dict(chunk) for chunk in entry.chunks or ()]
        self.finish_reason = entry.finish_reason
        usage = entry.usage or {}
        details = usage.get("prompt_tokens_details")
        self.usage = Usage(
            int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", 0)),
            int(details.get("cached_tokens", 0)) if isinstance(details, dict) else 0,
        )

    async def _replay(self) -> AsyncIterator[dict[str, Any]]:
        for chunk in self._chunks:
            yield chunk

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._replay()

    async def aclose(self) -> None:
        return None


class ResponseCacheStore:
    """The `lg_response_cache` table, bounded and purged on expiry."""

    def __init__(
        self,
        store: ReadStore,
        clock: Clock,
        entries_max: int = ENTRIES_MAX_DEFAULT,
        bytes_max: int = BYTES_MAX_DEFAULT,
    ) -> None:
        self.store = store
        self.clock = clock
        self.entries_max = entries_max
        self.bytes_max = bytes_max
        self._leaders: dict[str, asyncio.Event] = {}

    def get_sync(self, lookup_id: str) -> str | None:
        now = iso(self.clock.now())
        with self.store.transaction(write=False) as tx:
            row = tx.execute(
                "SELECT sealed FROM lg_response_cache WHERE lookup_id = %s AND expires_at > %s",
                (lookup_id, now),
            ).fetchone()
        return None if row is None else str(row["sealed"])

    def put_sync(self, lookup_id: str, sealed: str, ttl_s: int) -> None:
        now = self.clock.now()
        size = len(sealed)
        with self.store.transaction() as tx:
            tx.execute("DELETE FROM lg_response_cache WHERE expires_at <= %s", (iso(now),))
            tx.execute(
                "INSERT INTO lg_response_cache (lookup_id, sealed, size_bytes, created_at,"
                " expires_at) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (lookup_id) DO UPDATE"
                " SET sealed = excluded.sealed, size_bytes = excluded.size_bytes,"
                " created_at = excluded.created_at, expires_at = excluded.expires_at",
                (lookup_id, sealed, size, iso(now), iso(now + timedelta(seconds=ttl_s))),
            )
            totals = tx.execute(
                "SELECT COUNT(*) AS entries, COALESCE(SUM(size_bytes), 0) AS size"
                " FROM lg_response_cache"
            ).fetchone()
            entries = int(totals["entries"]) if totals else 0
            total_bytes = int(totals["size"]) if totals else 0
            if entries > self.entries_max or total_bytes > self.bytes_max:
                self._evict_oldest(tx, entries, total_bytes)

    def _evict_oldest(self, tx: Any, entries: int, total_bytes: int) -> None:
        """Delete the oldest entries until both bounds hold again (bounded batches)."""
        for _ in range(1000):
            if entries <= self.entries_max and total_bytes <= self.bytes_max:
                return
            rows = tx.execute(
                "SELECT lookup_id, size_bytes FROM lg_response_cache"
                " ORDER BY created_at, lookup_id LIMIT %s",
                (max(entries - self.entries_max, 1),),
            ).fetchall()
            if not rows:
                return
            for row in rows:
                tx.execute(
                    "DELETE FROM lg_response_cache WHERE lookup_id = %s", (row["lookup_id"],)
                )
                entries -= 1
                total_bytes -= int(row["size_bytes"])

    def purge_expired_sync(self) -> int:
        with self.store.transaction() as tx:
            return tx.execute(
                "DELETE FROM lg_response_cache WHERE expires_at <= %s", (iso(self.clock.now()),)
            ).rowcount

    # --- one request's steps ----------------------------------------------------------------

    async def lookup(self, plan: CachePlan) -> None:
        """Read the entry (sets `plan.hit`), or become the leader of identical requests, or
        wait for the leader in flight and read again. A store failure is a miss, logged."""
        if not plan.options.read and not plan.options.write:
            return  # not consulted: the plan's outcome stands
        if not plan.options.read:
            plan.outcome = BYPASS
            await self._lead(plan)
            return
        plan.outcome = MISS
        for _ in range(2):
            try:
                sealed = await anyio.to_thread.run_sync(self.get_sync, plan.lookup_id)
            except Exception as error:
                log.error("response cache read failed: %s", type(error).__name__)
                return
            entry = None if sealed is None else unseal(plan, sealed)
            if entry is not None:
                plan.hit, plan.outcome = entry, HIT
                return
            leader = self._leaders.get(plan.lookup_id)
            if leader is None or not plan.options.write:
                break
            try:
                await asyncio.wait_for(leader.wait(), FOLLOWER_WAIT_S_MAX)
            except TimeoutError:
                break
        await self._lead(plan)

    async def _lead(self, plan: CachePlan) -> None:
        if plan.options.write and plan.lookup_id not in self._leaders:
            plan.leader_event = self._leaders[plan.lookup_id] = asyncio.Event()

    async def store_entry(self, plan: CachePlan, entry: CacheEntry) -> None:
        try:
            if plan.store_wanted:
                sealed = seal(plan, entry)
                if sealed is not None:
                    await anyio.to_thread.run_sync(
                        self.put_sync, plan.lookup_id, sealed, plan.options.ttl_s
                    )
        except Exception as error:  # the client has its answer; the cache is best effort
            log.error("response cache write failed: %s", type(error).__name__)
        finally:
            self.release(plan)

    def release(self, plan: CachePlan) -> None:
        """The leader is done (stored, or failed): waiting identical requests read again."""
        event = plan.leader_event
        if event is not None:
            plan.leader_event = None
            if self._leaders.get(plan.lookup_id) is event:
                del self._leaders[plan.lookup_id]
            event.set()


def build_response_cache(services: Any) -> ResponseCacheStore:
    """The process's store: built once, by gateway/bootstrap.py `build_services`."""
    settings = services.settings
    return ResponseCacheStore(
        services.store,
        services.clock,
        entries_max=settings.response_cache_entries_max,
        bytes_max=settings.response_cache_bytes_max,
    )


def response_cache(services: Any) -> ResponseCacheStore:
    """The store built once (`services.response_cache`)."""
    return services.response_cache  # type: ignore[no-any-return]


def plan_request(
    headers: Any,
    body: dict[str, Any],
    *,
    endpoint: str,
    api_key: str,
    project_id: UUID,
    scope: str,
    models: tuple[str, ...],
    pii_policy: Any,
    stream: bool,
    screened_body: dict[str, Any],
) -> CachePlan:
    """The request's cache plan (one that neither reads nor writes when the request does
    not use the cache). Header errors raise (400) before anything is reserved."""
    options = options_from(headers)
    if not eligible(options, body) or not (options.read or options.write):
        # Not consulted. `never` (or no-cache with no-store) is a bypass the caller asked for;
        # a sampled request in `auto` is simply answered by its provider: a miss.
        unused = CacheOptions(options.mode, read=False, write=False, ttl_s=options.ttl_s)
        asked = options.mode == MODE_NEVER or not (options.read or options.write)
        return CachePlan(unused, "", b"", outcome=BYPASS if asked else MISS)
    # What makes two requests the same question: the upstream body (its stream options
    # aside), under the same project, tier scope, models, PII policy and stream flag.
    body_asked = {
        k: v
        for k, v in upstream_body_of(screened_body).items()
        if k not in ("stream", "stream_options")
    }
    material = orjson.dumps(
        {
            "v": 1,
            "endpoint": endpoint,
            "project": str(project_id),
            "scope": scope,
            "models": sorted(set(models)),
            "pii": _policy_key(pii_policy),
            "stream": stream,
            "body": canonical_sha256(body_asked),
        },
        option=orjson.OPT_SORT_KEYS,
    )
    lookup_id, entry_key = _derive(api_key, material)
    return CachePlan(options=options, lookup_id=lookup_id, entry_key=entry_key)


def cache_fields(plan: CachePlan | None) -> dict[str, Any]:
    """The completion's cache facts (domain Request.Completed v2)."""
    if plan is None:
        return {"cache": BYPASS, "cache_origin_request_id": None}
    origin = plan.hit.origin_request_id if plan.hit is not None else None
    return {"cache": plan.outcome, "cache_origin_request_id": origin}


def _policy_key(policy: Any) -> Any:
    """The PII policy in canonical form (sets sorted): part of the cache key."""
    if policy is None:
        return None
    canonical: dict[str, Any] = {}
    for policy_field in dataclasses.fields(policy):
        value = getattr(policy, policy_field.name)
        canonical[policy_field.name] = sorted(value) if isinstance(value, frozenset) else str(value)
    return canonical
