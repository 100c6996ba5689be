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

Project policy (domain/cache_policy.py, set by admin command): the default mode used when
a request sends no `X-LG-Use-Cache`; sharing across the project's keys, where the HKDF input
is the project's sharing secret instead of the API key (derived from the server's
`LEDGERGATE_SECRET_KEY`, the project id and the key mode, never stored: a test key and a
live key never share); and the semantic cache (gateway/semantic_cache.py), also asked per
request with `X-LG-Cache-Semantic: <threshold>` (`off` turns the project's default off).

The store is the read-model database's `lg_response_cache` table (migrations 0007, 0009):
bounded per project by `LEDGERGATE_RESPONSE_CACHE_PROJECT_ENTRIES_MAX` and `..._PROJECT_BYTES_MAX`
and in total by `LEDGERGATE_RESPONSE_CACHE_ENTRIES_MAX` and `..._BYTES_MAX`, evicting the
oldest entries first (the project's own first when it is the one over its bound, so one
tenant cannot evict another's entries beyond the total bound), and purged of expired entries
on every write. Identical requests in flight in one process share one upstream call (the
first is the leader; the others wait for its entry).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import hashlib
import hmac
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import anyio.to_thread
import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from domain.cache_policy import (
    CACHE_MODE_ALWAYS,
    CACHE_MODE_AUTO,
    CACHE_MODE_NEVER,
    CACHE_MODES,
    DEFAULT_POLICY,
    CachePolicy,
    ProjectCachePolicy,
    parse_semantic_threshold,
    policy_of,
)
from domain.clock import Clock
from domain.errors import InvalidCommand
from domain.ids import key_mode
from gateway import semantic_cache as sc
from gateway.errors import GatewayError
from gateway.json_bytes import canonical_sha256
from gateway.providers.base import ChatStream, Usage
from gateway.validation import upstream_body_of
from projections.db import ReadStore, iso

log = logging.getLogger("ledgergate.response_cache")

MODE_AUTO, MODE_ALWAYS, MODE_NEVER = CACHE_MODE_AUTO, CACHE_MODE_ALWAYS, CACHE_MODE_NEVER
MODES = CACHE_MODES
HIT, MISS, BYPASS = "hit", "miss", "bypass"
SEMANTIC_HIT = "semantic_hit"  # the audit's cache outcome of a semantic hit (header: hit)
USAGE_SOURCE_CACHE = "cache"  # the ledger's usage of a hit: zero tokens, no provider called
TTL_S_MAX = 7 * 24 * 3600  # the bound: a week; also the default
ENTRIES_MAX_DEFAULT = 10_000
BYTES_MAX_DEFAULT = 64 * 1024 * 1024
PROJECT_ENTRIES_MAX_DEFAULT = 2_000  # one project may fill a fifth of the default total
PROJECT_BYTES_MAX_DEFAULT = 16 * 1024 * 1024
ENTRY_BYTES_MAX = 1024 * 1024  # a larger answer is served but not cached
FOLLOWER_WAIT_S_MAX = 120.0  # an identical request waits this long for its leader at most
_LOOKUP_SALT = b"ledgergate response cache lookup v1"
_ENTRY_INFO = b"ledgergate response cache entry v1"
_PROJECT_SECRET_INFO = b"ledgergate response cache project sharing secret v1"
SEMANTIC_HEADER = "x-lg-cache-semantic"
_NONCE_BYTES = 12


@dataclass(frozen=True)
class CacheOptions:
    """What the request's headers ask of the cache."""

    mode: str = MODE_AUTO
    read: bool = True
    write: bool = True
    ttl_s: int = TTL_S_MAX
    mode_given: bool = False  # False: no mode header, the project's default mode applies
    no_cache: bool = False
    no_store: bool = False
    # The request's X-LG-Cache-Semantic: None absent (the project's default applies), "off",
    # or a threshold.
    semantic: Decimal | str | None = None


SEMANTIC_OFF = "off"


def options_from(headers: Any) -> CacheOptions:
    """Parse the cache headers; a bad value is a 400 naming the header."""
    semantic: Decimal | str | None = None
    raw_semantic = headers.get(SEMANTIC_HEADER)
    if raw_semantic is not None:
        text = raw_semantic.strip().lower()
        if text == SEMANTIC_OFF:
            semantic = SEMANTIC_OFF
        else:
            try:
                semantic = parse_semantic_threshold(text)
            except InvalidCommand as error:
                raise GatewayError(
                    "invalid_request", f"{SEMANTIC_HEADER}: {error} (or off)", param=SEMANTIC_HEADER
                ) from None
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
    return with_mode(
        CacheOptions(
            mode=mode,
            ttl_s=ttl_s,
            mode_given=raw_mode is not None,
            no_cache="no-cache" in directives,
            no_store="no-store" in directives,
            semantic=semantic,
        ),
        mode,
    )


def with_mode(options: CacheOptions, mode: str) -> CacheOptions:
    """The options under `mode` (the header's, or the project's default)."""
    return dataclasses.replace(
        options,
        mode=mode,
        read=mode != MODE_NEVER and not options.no_cache,
        write=mode != MODE_NEVER and not options.no_store,
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


@dataclass(frozen=True)
class PlanInputs:
    """What a plan is derived from, kept (in memory only) until the project's policy is known:
    the policy may change the mode, the secret (sharing) and add the semantic cache."""

    endpoint: str
    project_id: UUID
    scope: str
    models: tuple[str, ...]
    pii_policy: Any
    stream: bool
    screened_body: dict[str, Any] = field(repr=False)
    body_eligible_auto: bool  # temperature 0 or a seed: what `auto` caches
    api_key: str = field(repr=False)
    key_mode: str
    header_options: CacheOptions
    # The caller's identity (headers, or the body's `user`), for the embedding request made
    # on its behalf.
    caller_headers: tuple[tuple[str, str], ...] = field(repr=False, default=())
    user: str | None = None


@dataclass
class SemanticPlan:
    """The semantic cache's part of one request: its bucket, threshold and, once embedded,
    the prompt's unit vector (in memory only; stored sealed with the entry)."""

    threshold: Decimal
    embedding_model: str
    bucket: sc.Bucket
    text: str = field(repr=False)
    vector: Any = field(default=None, repr=False)
    similarity: float | None = None  # of the entry served, on a semantic hit
    embedding_request_id: str | None = None


@dataclass
class CachePlan:
    """One request's use of the cache: its lookup id and entry key (derived, in memory)."""

    options: CacheOptions
    lookup_id: str
    entry_key: bytes = field(repr=False)
    outcome: str = BYPASS
    hit: CacheEntry | None = None
    leader_event: asyncio.Event | None = None
    inputs: PlanInputs | None = field(default=None, repr=False)
    policy: CachePolicy = DEFAULT_POLICY
    shared: bool = False  # sealed under the project's sharing secret, not the API key
    semantic: SemanticPlan | None = None

    @property
    def store_wanted(self) -> bool:
        return self.options.write and self.hit is None

    @property
    def consulted(self) -> bool:
        return self.options.read or self.options.write

    def headers(self) -> dict[str, str]:
        """Response headers beyond X-LG-Cache: the similarity of a semantic hit."""
        semantic = self.semantic
        if semantic is None:
            return {}
        headers = {}
        if semantic.embedding_request_id is not None:
            # The embeddings request made (and charged) for the lookup: its own audit record.
            headers["X-LG-Cache-Embedding-Request-Id"] = semantic.embedding_request_id
        if self.hit is not None and semantic.similarity is not None:
            headers["X-LG-Cache-Similarity"] = f"{semantic.similarity:.4f}"
        return headers


def _derive(secret: str | bytes, material: bytes) -> tuple[str, bytes]:
    secret = secret.encode() if isinstance(secret, str) else secret
    lookup_key = HKDF(hashes.SHA256(), 32, salt=_LOOKUP_SALT, info=b"lookup").derive(secret)
    lookup_id = hmac.new(lookup_key, material, hashlib.sha256).hexdigest()
    entry_key = HKDF(
        hashes.SHA256(), 32, salt=hashlib.sha256(material).digest(), info=_ENTRY_INFO
    ).derive(secret)
    return lookup_id, entry_key


def project_sharing_secret(server_secret: str, project_id: UUID, mode: str) -> bytes:
    """The secret a sharing project's entries are derived from: the server's secret, the
    project and the key mode (live and test never share). Derived on use, never stored."""
    return HKDF(
        hashes.SHA256(),
        32,
        salt=f"{project_id}|{mode}".encode(),
        info=_PROJECT_SECRET_INFO,
    ).derive(server_secret.encode())


def material_fields(
    *,
    endpoint: str,
    project_id: UUID,
    scope: str,
    models: tuple[str, ...],
    pii_policy: Any,
    stream: bool,
) -> dict[str, Any]:
    """The cache key's fields beside the body: shared by the exact and the semantic key."""
    return {
        "endpoint": endpoint,
        "project": str(project_id),
        "scope": scope,
        "models": sorted(set(models)),
        "pii": _policy_key(pii_policy),
        "stream": stream,
    }


def cache_material(fields: dict[str, Any], screened_body: dict[str, Any]) -> bytes:
    """What a cache key is derived from: the request's scope `fields` (material_fields) and the
    canonical screened body (placeholders, never raw PII), stream flags aside."""
    body = {
        k: v
        for k, v in upstream_body_of(screened_body).items()
        if k not in ("stream", "stream_options")
    }
    return orjson.dumps(
        {"v": 1, **fields, "body": canonical_sha256(body)}, option=orjson.OPT_SORT_KEYS
    )


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


@dataclass(frozen=True)
class EmbedAsk:
    """An embedding the semantic cache needs, made on the caller's behalf (its key, actor
    and tier): a request like any other, audited and charged."""

    project_id: UUID
    model: str
    text: str = field(repr=False)
    caller_headers: tuple[tuple[str, str], ...] = field(repr=False, default=())
    user: str | None = None


@dataclass(frozen=True)
class Embedded:
    vector: list[float] | None = field(repr=False)
    request_id: str | None
    error_code: str | None = None


PolicyLoader = Callable[[UUID], Awaitable[CachePolicy]]
Embedder = Callable[[EmbedAsk], Awaitable[Embedded]]
EmbeddingModelChooser = Callable[[Any, str], str | None]  # (effective tier, preferred) → model


class ResponseCacheStore:
    """The `lg_response_cache` table, bounded (per project and in total) and purged on
    expiry, and the semantic index decrypted in this process."""

    def __init__(
        self,
        store: ReadStore,
        clock: Clock,
        entries_max: int = ENTRIES_MAX_DEFAULT,
        bytes_max: int = BYTES_MAX_DEFAULT,
        *,
        project_entries_max: int = PROJECT_ENTRIES_MAX_DEFAULT,
        project_bytes_max: int = PROJECT_BYTES_MAX_DEFAULT,
        policy_loader: PolicyLoader | None = None,
        server_secret: str | None = None,
        embedder: Embedder | None = None,
        embedding_model_for: EmbeddingModelChooser | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.entries_max = entries_max
        self.bytes_max = bytes_max
        self.project_entries_max = project_entries_max
        self.project_bytes_max = project_bytes_max
        self.policy_loader = policy_loader
        self._server_secret = server_secret or None
        self.embedder = embedder
        self.embedding_model_for = embedding_model_for
        self.semantic_index = sc.SemanticIndex()
        self._leaders: dict[str, asyncio.Event] = {}

    @property
    def can_share(self) -> bool:
        return self._server_secret is not None

    def get_sync(self, lookup_id: str) -> str | None:
        now = iso(self.clock.now())
        with self.store.transaction(write=False) as tx:
            row = tx.execute(
                "SELECT sealed FROM lg_response_cache WHERE lookup_id = %s AND expires_at > %s",
                (lookup_id, now),
            ).fetchone()
        return None if row is None else str(row["sealed"])

    def put_sync(
        self,
        lookup_id: str,
        sealed: str,
        ttl_s: int,
        *,
        project_id: str = "",
        bucket_id: str | None = None,
        sealed_semantic: str | None = None,
    ) -> None:
        now = self.clock.now()
        size = len(sealed) + len(sealed_semantic or "")
        with self.store.transaction() as tx:
            tx.execute("DELETE FROM lg_response_cache WHERE expires_at <= %s", (iso(now),))
            previous = tx.execute(
                "SELECT bucket_id FROM lg_response_cache WHERE lookup_id = %s", (lookup_id,)
            ).fetchone()
            if previous is not None and previous["bucket_id"]:
                _count_removal(tx, str(previous["bucket_id"]))  # its vector is replaced
            bucket_seq = None
            if bucket_id is not None:
                counted = tx.execute(
                    "INSERT INTO lg_semantic_buckets (bucket_id, inserts, removals)"
                    " VALUES (%s, 1, 0) ON CONFLICT (bucket_id) DO UPDATE"
                    " SET inserts = lg_semantic_buckets.inserts + 1 RETURNING inserts",
                    (bucket_id,),
                ).fetchone()
                bucket_seq = None if counted is None else int(counted["inserts"])
            tx.execute(
                "INSERT INTO lg_response_cache (lookup_id, sealed, size_bytes, created_at,"
                " expires_at, project_id, bucket_id, bucket_seq, sealed_semantic)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (lookup_id) DO UPDATE"
                " SET sealed = excluded.sealed, size_bytes = excluded.size_bytes,"
                " created_at = excluded.created_at, expires_at = excluded.expires_at,"
                " project_id = excluded.project_id, bucket_id = excluded.bucket_id,"
                " bucket_seq = excluded.bucket_seq, sealed_semantic = excluded.sealed_semantic",
                (
                    lookup_id,
                    sealed,
                    size,
                    iso(now),
                    iso(now + timedelta(seconds=ttl_s)),
                    project_id,
                    bucket_id,
                    bucket_seq,
                    sealed_semantic,
                ),
            )
            if project_id:
                self._evict_oldest(tx, self.project_entries_max, self.project_bytes_max, project_id)
            self._evict_oldest(tx, self.entries_max, self.bytes_max)

    def _evict_oldest(
        self, tx: Any, entries_max: int, bytes_max: int, project_id: str | None = None
    ) -> None:
        """Delete the oldest entries (of the project, when given) until both bounds hold
        again (bounded batches)."""
        where, params = ("WHERE project_id = %s", (project_id,)) if project_id else ("", ())
        totals = tx.execute(
            "SELECT COUNT(*) AS entries, COALESCE(SUM(size_bytes), 0) AS size"
            f" FROM lg_response_cache {where}",  # noqa: S608
            params,
        ).fetchone()
        entries = int(totals["entries"]) if totals else 0
        total_bytes = int(totals["size"]) if totals else 0
        for _ in range(1000):
            if entries <= entries_max and total_bytes <= bytes_max:
                return
            rows = tx.execute(
                f"SELECT lookup_id, size_bytes, bucket_id FROM lg_response_cache {where}"  # noqa: S608
                " ORDER BY created_at, lookup_id LIMIT %s",
                (*params, max(entries - entries_max, 1)),
            ).fetchall()
            if not rows:
                return
            for row in rows:
                tx.execute(
                    "DELETE FROM lg_response_cache WHERE lookup_id = %s", (row["lookup_id"],)
                )
                if row["bucket_id"]:
                    _count_removal(tx, str(row["bucket_id"]))
                entries -= 1
                total_bytes -= int(row["size_bytes"])

    def purge_expired_sync(self) -> int:
        with self.store.transaction() as tx:
            return tx.execute(
                "DELETE FROM lg_response_cache WHERE expires_at <= %s", (iso(self.clock.now()),)
            ).rowcount

    def project_usage_sync(self, project_id: str) -> dict[str, int]:
        """How much of the store one project holds (entries, bytes): what its bound limits."""
        with self.store.transaction(write=False) as tx:
            row = tx.execute(
                "SELECT COUNT(*) AS entries, COALESCE(SUM(size_bytes), 0) AS size"
                " FROM lg_response_cache WHERE project_id = %s AND expires_at > %s",
                (project_id, iso(self.clock.now())),
            ).fetchone()
        if row is None:
            return {"entries": 0, "bytes": 0}
        return {"entries": int(row["entries"]), "bytes": int(row["size"])}

    # --- the semantic index -----------------------------------------------------------------

    def refresh_bucket_sync(self, bucket: sc.Bucket) -> sc.BucketIndex | None:
        """The bucket's index, brought up to date with the store in one primary-key read when
        nothing changed: rows added since (by any process) are decrypted and added; after an
        eviction the index is rebuilt; expired rows are masked, then pruned."""
        now_s = self.clock.now().timestamp()
        index = self.semantic_index.get(bucket.bucket_id)
        with self.store.transaction(write=False) as tx:
            counts = tx.execute(
                "SELECT inserts, removals FROM lg_semantic_buckets WHERE bucket_id = %s",
                (bucket.bucket_id,),
            ).fetchone()
            if counts is None:
                self.semantic_index.drop(bucket.bucket_id)
                return None
            inserts, removals = int(counts["inserts"]), int(counts["removals"])
            if index is not None and (index.inserts, index.removals) == (inserts, removals):
                index.prune(now_s)
                return index
            rebuild = index is None or index.removals != removals
            since = 0 if rebuild or index is None else index.inserts
            rows = tx.execute(
                "SELECT lookup_id, sealed_semantic, expires_at, bucket_seq FROM lg_response_cache"
                " WHERE bucket_id = %s AND bucket_seq > %s AND expires_at > %s",
                (bucket.bucket_id, since, iso(self.clock.now())),
            ).fetchall()
        opened = []
        for row in rows:
            found = sc.unseal_vector(bucket, str(row["lookup_id"]), str(row["sealed_semantic"]))
            if found is not None:
                opened.append(
                    (str(row["lookup_id"]), found[0], found[1], sc.epoch_s(row["expires_at"]))
                )
        if rebuild or index is None:
            dimensions = opened[0][1].shape[0] if opened else 0
            index = sc.BucketIndex(dimensions)
        index.extend(opened)
        index.inserts, index.removals = inserts, removals
        index.prune(now_s)
        self.semantic_index.put(bucket.bucket_id, index)
        return index

    def semantic_neighbour_sync(self, plan: CachePlan) -> tuple[CacheEntry, float] | None:
        """The nearest live entry of the plan's bucket above its threshold, opened."""
        semantic = plan.semantic
        if semantic is None or semantic.vector is None:
            return None
        index = self.refresh_bucket_sync(semantic.bucket)
        if index is None:
            return None
        neighbour = index.nearest(semantic.vector, self.clock.now().timestamp())
        if neighbour is None or neighbour.similarity < float(semantic.threshold):
            return None
        sealed = self.get_sync(neighbour.lookup_id)
        if sealed is None:
            return None
        entry = open_entry(neighbour.lookup_id, neighbour.entry_key, sealed)
        return None if entry is None else (entry, neighbour.similarity)

    # --- one request's steps ----------------------------------------------------------------

    async def resolve(self, plan: CachePlan, effective: Any = None) -> None:
        """Apply the project's policy to a plan made from the headers alone: its default mode
        (when the request named none), sharing across keys, the semantic cache."""
        inputs = plan.inputs
        if inputs is None:
            return
        policy = DEFAULT_POLICY
        if self.policy_loader is not None:
            try:
                policy = await self.policy_loader(inputs.project_id)
            except Exception as error:  # the policy unreadable: the request's headers alone
                log.error("cache policy read failed: %s", type(error).__name__)
        resolved = build_plan(
            inputs,
            policy,
            server_secret=self._server_secret,
            effective=effective,
            embedding_model_for=self.embedding_model_for,
        )
        for name in (
            "options",
            "lookup_id",
            "entry_key",
            "outcome",
            "policy",
            "shared",
            "semantic",
        ):
            setattr(plan, name, getattr(resolved, name))

    async def lookup(self, plan: CachePlan, effective: Any = None) -> None:
        """Read the entry (sets `plan.hit`), or become the leader of identical requests, or
        wait for the leader in flight and read again; on an exact miss, the semantic cache
        when asked. A store failure is a miss, logged."""
        await self.resolve(plan, effective)
        if not plan.options.read and not plan.options.write:
            return  # not consulted: the plan's outcome stands
        if not plan.options.read:
            plan.outcome = BYPASS
            await self._embed(plan)  # a semantic entry still needs its vector
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
        if await self._embed(plan):
            try:
                found = await anyio.to_thread.run_sync(self.semantic_neighbour_sync, plan)
            except Exception as error:
                log.error("semantic cache read failed: %s", type(error).__name__)
                found = None
            if found is not None and plan.semantic is not None:
                plan.hit, plan.outcome = found[0], HIT
                plan.semantic.similarity = found[1]
                return
        await self._lead(plan)

    async def _embed(self, plan: CachePlan) -> bool:
        """The prompt's vector for the semantic cache (an embeddings request of the caller's):
        False when the semantic cache is not used or the embedding failed (then an exact miss
        is simply a miss)."""
        semantic, inputs = plan.semantic, plan.inputs
        if semantic is None or inputs is None or self.embedder is None:
            return False
        try:
            embedded = await self.embedder(
                EmbedAsk(
                    project_id=inputs.project_id,
                    model=semantic.embedding_model,
                    text=semantic.text,
                    caller_headers=inputs.caller_headers,
                    user=inputs.user,
                )
            )
        except Exception as error:
            log.error("semantic cache embedding failed: %s", type(error).__name__)
            plan.semantic = None
            return False
        semantic.embedding_request_id = embedded.request_id
        vector = None if embedded.vector is None else sc.normalized(embedded.vector)
        if vector is None:
            log.warning("semantic cache embedding refused: %s", embedded.error_code or "no vector")
            plan.semantic = None
            return False
        semantic.vector = vector
        return True

    async def _lead(self, plan: CachePlan) -> None:
        if plan.options.write and plan.lookup_id not in self._leaders:
            plan.leader_event = self._leaders[plan.lookup_id] = asyncio.Event()

    async def store_entry(self, plan: CachePlan, entry: CacheEntry) -> None:
        try:
            if plan.store_wanted:
                sealed = seal(plan, entry)
                if sealed is not None:
                    semantic = plan.semantic
                    bucket_id = sealed_semantic = None
                    if semantic is not None and semantic.vector is not None:
                        bucket_id = semantic.bucket.bucket_id
                        sealed_semantic = sc.seal_vector(
                            semantic.bucket, plan.lookup_id, semantic.vector, plan.entry_key
                        )
                    project_id = "" if plan.inputs is None else str(plan.inputs.project_id)
                    await anyio.to_thread.run_sync(
                        functools.partial(
                            self.put_sync,
                            plan.lookup_id,
                            sealed,
                            plan.options.ttl_s,
                            project_id=project_id,
                            bucket_id=bucket_id,
                            sealed_semantic=sealed_semantic,
                        )
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


def _count_removal(tx: Any, bucket_id: str) -> None:
    """A bucket lost a row other than by expiry: processes holding its index rebuild it."""
    tx.execute(
        "UPDATE lg_semantic_buckets SET removals = removals + 1 WHERE bucket_id = %s",
        (bucket_id,),
    )


def open_entry(lookup_id: str, entry_key: bytes, sealed: str) -> CacheEntry | None:
    return unseal(CachePlan(CacheOptions(), lookup_id, entry_key), sealed)


def build_response_cache(services: Any) -> ResponseCacheStore:
    """The process's store: built once, by gateway/bootstrap.py `build_services`. The embedder
    (an embeddings request through the router) is wired by the composition root
    (gateway/http/app.py: install_semantic_cache): without it the semantic cache is off and
    the exact cache works alone."""
    settings = services.settings
    return ResponseCacheStore(
        services.store,
        services.clock,
        entries_max=settings.response_cache_entries_max,
        bytes_max=settings.response_cache_bytes_max,
        project_entries_max=settings.response_cache_project_entries_max,
        project_bytes_max=settings.response_cache_project_bytes_max,
        policy_loader=policy_loader(services.cache.get),
        server_secret=settings.server_secret,
    )


def response_cache(services: Any) -> ResponseCacheStore:
    """The store built once (`services.response_cache`)."""
    return services.response_cache  # type: ignore[no-any-return]


def policy_loader(load: Callable[..., Awaitable[Any]]) -> PolicyLoader:
    """The project's policy through the aggregate cache, which also remembers that a project
    has none (most never set one; read on every request). Either is dropped on the policy's
    next event, from any process: a change applies within the runner's lag everywhere."""

    async def loaded(project_id: UUID) -> CachePolicy:
        aggregate_id = ProjectCachePolicy.create_id(str(project_id))
        return policy_of(await load(aggregate_id, keep_miss=True))

    return loaded


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
    """The request's cache plan from its headers (the project's policy is applied by
    `lookup`, after admission). Header errors raise (400) before anything is reserved."""
    options = options_from(headers)
    inputs = PlanInputs(
        endpoint=endpoint,
        project_id=project_id,
        scope=scope,
        models=models,
        pii_policy=pii_policy,
        stream=stream,
        screened_body=screened_body,
        body_eligible_auto=eligible(CacheOptions(), body),
        api_key=api_key,
        key_mode=key_mode(api_key),
        header_options=options,
        caller_headers=tuple(
            (name, headers[name]) for name in CALLER_HEADERS if headers.get(name) is not None
        ),
        user=body.get("user") if isinstance(body.get("user"), str) else None,
    )
    return build_plan(inputs, DEFAULT_POLICY)


# The caller's identity, carried to the embedding request made on its behalf.
CALLER_HEADERS = ("authorization", "x-user-id", "x-actor-token")


def build_plan(
    inputs: PlanInputs,
    policy: CachePolicy,
    *,
    server_secret: str | None = None,
    effective: Any = None,
    embedding_model_for: EmbeddingModelChooser | None = None,
) -> CachePlan:
    """The plan under a policy: the mode (the header's, else the project's default), whether
    the request is cached at all, the secret its keys derive from, the semantic bucket."""
    header_options = inputs.header_options
    options = (
        header_options
        if header_options.mode_given
        else with_mode(header_options, policy.default_mode)
    )
    cached = options.mode == MODE_ALWAYS or (
        options.mode == MODE_AUTO and inputs.body_eligible_auto
    )
    if not cached or not (options.read or options.write):
        # Not consulted. `never` (or no-cache with no-store) is a bypass the caller asked for;
        # a sampled request in `auto` is simply answered by its provider: a miss.
        unused = dataclasses.replace(options, read=False, write=False)
        asked = options.mode == MODE_NEVER or not (options.read or options.write)
        return CachePlan(
            unused, "", b"", outcome=BYPASS if asked else MISS, inputs=inputs, policy=policy
        )
    shared = policy.share_across_keys and server_secret is not None
    secret: str | bytes = (
        project_sharing_secret(server_secret, inputs.project_id, inputs.key_mode)
        if shared and server_secret is not None
        else inputs.api_key
    )
    fields = material_fields(
        endpoint=inputs.endpoint,
        project_id=inputs.project_id,
        scope=inputs.scope,
        models=inputs.models,
        pii_policy=inputs.pii_policy,
        stream=inputs.stream,
    )
    material = cache_material(fields, inputs.screened_body)
    lookup_id, entry_key = _derive(secret, material)
    plan = CachePlan(
        options=options,
        lookup_id=lookup_id,
        entry_key=entry_key,
        inputs=inputs,
        policy=policy,
        shared=shared,
    )
    threshold = options.semantic if options.semantic is not None else policy.semantic_threshold
    if (
        isinstance(threshold, Decimal)
        and inputs.endpoint == ENDPOINT_CHAT
        and embedding_model_for is not None
    ):
        text = sc.semantic_text(inputs.screened_body)
        model = embedding_model_for(effective, policy.semantic_model)
        if text is not None and model is not None:
            bucket = sc.derive_bucket(
                secret if isinstance(secret, bytes) else secret.encode(),
                sc.bucket_material(
                    exact_material_fields=fields,
                    screened_body=inputs.screened_body,
                    embedding_model=model,
                ),
            )
            plan.semantic = SemanticPlan(threshold, model, bucket, text)
    return plan


ENDPOINT_CHAT = "chat.completions"


def cache_fields(plan: CachePlan | None) -> dict[str, Any]:
    """The completion's cache facts (domain Request.Completed v2): `semantic_hit` when the
    answer was served for a similar prompt."""
    if plan is None:
        return {"cache": BYPASS, "cache_origin_request_id": None}
    origin = plan.hit.origin_request_id if plan.hit is not None else None
    outcome = plan.outcome
    if plan.hit is not None and plan.semantic is not None and plan.semantic.similarity is not None:
        outcome = SEMANTIC_HIT
    return {"cache": outcome, "cache_origin_request_id": origin}


def _policy_key(policy: Any) -> Any:
    """The PII policy in canonical form (sets sorted): part of the cache key."""
    if policy is None:
        return None
    canonical: dict[str, Any] = {}
    for policy_field in dataclasses.fields(policy):
        value = getattr(policy, policy_field.name)
        canonical[policy_field.name] = sorted(value) if isinstance(value, frozenset) else str(value)
    return canonical
