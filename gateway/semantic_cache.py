"""The semantic cache's pieces: what is embedded, which entries may be compared, the sealed
vectors and the in-process nearest-neighbour index (an exact cosine scan with numpy).

What is embedded: the screened conversation (placeholders, never raw PII), every message as
`role: text`, joined by newlines, at most SEMANTIC_TEXT_CHARS_MAX characters (a longer
conversation does not use the semantic cache). Everything else of the request (model set,
parameters, roles and tool calls of each message, tier, project, PII policy, stream flag, the
embedding model) must match exactly: it names the *bucket*, and a prompt is only ever
compared with the entries of its own bucket, so an answer never crosses projects, tiers,
model sets or keys (or, when the project shares entries, the project).

Secrecy. A vector reveals its text approximately (embedding inversion recovers much of a
sentence from a good embedding; the simulator's hashed n-grams reveal its words to anyone who
can test guesses). So vectors are never stored in the clear: each entry's vector and the key
of its answer are sealed with AES-256-GCM under a bucket key derived (HKDF) from the caller's
API key (or the project's sharing secret) and the bucket, with the bucket id and lookup id as
associated data. The store holds ciphertext; the index is decrypted in the memory of the
process serving a caller who presented the key. The price: the database cannot search the
vectors (pgvector would need them in the clear), so the search is an exact scan in process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.json_bytes import canonical_sha256
from gateway.validation import upstream_body_of

SEMANTIC_TEXT_CHARS_MAX = 16_000  # beyond this a conversation is not embedded for the cache
VECTOR_DIMENSIONS_MAX = 8192  # a longer vector is refused (no model of the catalog is near)
BUCKETS_IN_MEMORY_MAX = 512  # decrypted bucket indexes kept per process (least recent dropped)
BUCKET_ENTRIES_MAX = 100_000  # an index never holds more (the store's bounds are far lower)
_BUCKET_SALT = b"ledgergate semantic cache bucket v1"
_VECTOR_INFO = b"ledgergate semantic cache vector v1"
_NONCE_BYTES = 12


def semantic_text(screened_body: dict[str, Any]) -> str | None:
    """The text compared for similarity: the screened messages, or None when there is none
    (or it is too long to embed for the cache)."""
    lines = []
    for message in screened_body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        text = _content_text(message.get("content"))
        if text:
            lines.append(f"{message.get('role', 'user')}: {text}")
    joined = "\n".join(lines)
    if not joined.strip() or len(joined) > SEMANTIC_TEXT_CHARS_MAX:
        return None
    return joined


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type", "text") == "text"
        )
    return ""


def _without_text(content: Any) -> Any:
    """A message's content with its text removed and anything else (images, documents) kept:
    those must match exactly for two prompts to share an answer."""
    if isinstance(content, list):
        return [
            {"type": "text"}
            if isinstance(part, dict) and part.get("type", "text") == "text"
            else part
            for part in content
        ]
    return None if content is None else ""


def bucket_material(
    *,
    exact_material_fields: dict[str, Any],
    screened_body: dict[str, Any],
    embedding_model: str,
) -> bytes:
    """What must match exactly for two prompts to be compared: the exact cache key's fields
    with the messages' text taken out, and the embedding model."""
    body = {
        k: v
        for k, v in upstream_body_of(screened_body).items()
        if k not in ("stream", "stream_options")
    }
    body["messages"] = [
        {**message, "content": _without_text(message.get("content"))}
        if isinstance(message, dict)
        else message
        for message in body.get("messages") or ()
    ]
    return orjson.dumps(
        {
            **exact_material_fields,
            "v": 1,
            "kind": "semantic",
            "body": canonical_sha256(body),
            "embedding_model": embedding_model,
        },
        option=orjson.OPT_SORT_KEYS,
    )


@dataclass(frozen=True)
class Bucket:
    """One bucket of one secret (API key or project sharing secret): its id and its key."""

    bucket_id: str
    key: bytes = field(repr=False)


def derive_bucket(secret: bytes, material: bytes) -> Bucket:
    id_key = HKDF(hashes.SHA256(), 32, salt=_BUCKET_SALT, info=b"bucket id").derive(secret)
    bucket_id = hmac.new(id_key, material, hashlib.sha256).hexdigest()
    key = HKDF(
        hashes.SHA256(), 32, salt=hashlib.sha256(material).digest(), info=_VECTOR_INFO
    ).derive(secret)
    return Bucket(bucket_id, key)


def normalized(vector: Iterable[float]) -> np.ndarray | None:
    array = np.asarray(list(vector), dtype=np.float32)
    if array.ndim != 1 or not 0 < array.size <= VECTOR_DIMENSIONS_MAX:
        return None
    if not np.all(np.isfinite(array)):
        return None
    norm = float(np.linalg.norm(array))
    return None if norm == 0 else array / norm


def seal_vector(bucket: Bucket, lookup_id: str, vector: np.ndarray, entry_key: bytes) -> str:
    """The entry's vector and the key of its answer, sealed under the bucket key."""
    payload = orjson.dumps(
        {
            "vector": base64.b64encode(vector.astype("<f4").tobytes()).decode(),
            "entry_key": base64.b64encode(entry_key).decode(),
        }
    )
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(bucket.key).encrypt(nonce, payload, _aad(bucket, lookup_id))
    return base64.b64encode(nonce + sealed).decode()


def unseal_vector(bucket: Bucket, lookup_id: str, sealed: str) -> tuple[np.ndarray, bytes] | None:
    try:
        raw = base64.b64decode(sealed)
        payload = AESGCM(bucket.key).decrypt(
            raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _aad(bucket, lookup_id)
        )
        fields = orjson.loads(payload)
        vector = np.frombuffer(base64.b64decode(fields["vector"]), dtype="<f4").astype(np.float32)
        return vector, base64.b64decode(fields["entry_key"])
    except Exception:  # a tampered or foreign row is simply not part of the index
        return None


def _aad(bucket: Bucket, lookup_id: str) -> bytes:
    return f"{bucket.bucket_id}|{lookup_id}".encode()


@dataclass(frozen=True)
class Neighbour:
    lookup_id: str
    similarity: float
    entry_key: bytes = field(repr=False)


class BucketIndex:
    """The decrypted vectors of one bucket: a matrix of unit rows, scanned exactly."""

    def __init__(self, dimensions: int) -> None:
        self.dimensions = dimensions
        self.lookup_ids: list[str] = []
        self.entry_keys: list[bytes] = []
        self.expires_s = np.zeros(0, dtype=np.float64)
        self.matrix = np.zeros((0, dimensions), dtype=np.float32)
        # The bucket's counters in the store when this index was read (lg_semantic_buckets):
        # rows numbered up to `inserts` are in; a changed `removals` means rebuild.
        self.inserts = 0
        self.removals = 0

    def __len__(self) -> int:
        return len(self.lookup_ids)

    def extend(self, rows: list[tuple[str, np.ndarray, bytes, float]]) -> None:
        """Add (lookup id, unit vector, entry key, expiry epoch s); a row already present is
        replaced (a rewritten entry has a new vector)."""
        if not self.dimensions and rows:
            self.dimensions = rows[0][1].shape[0]
            self.matrix = np.zeros((0, self.dimensions), dtype=np.float32)
        fresh = [row for row in rows if row[1].shape == (self.dimensions,)]
        if not fresh:
            return
        replaced = {row[0] for row in fresh} & set(self.lookup_ids)
        if replaced:
            self.remove(replaced)
        self.lookup_ids += [row[0] for row in fresh]
        self.entry_keys += [row[2] for row in fresh]
        self.expires_s = np.concatenate([self.expires_s, np.array([row[3] for row in fresh])])
        self.matrix = np.vstack([self.matrix, np.stack([row[1] for row in fresh])])
        if len(self.lookup_ids) > BUCKET_ENTRIES_MAX:
            self.remove(set(self.lookup_ids[: len(self.lookup_ids) - BUCKET_ENTRIES_MAX]))

    def remove(self, lookup_ids: set[str]) -> None:
        keep = [i for i, lookup_id in enumerate(self.lookup_ids) if lookup_id not in lookup_ids]
        self.lookup_ids = [self.lookup_ids[i] for i in keep]
        self.entry_keys = [self.entry_keys[i] for i in keep]
        self.expires_s = self.expires_s[keep]
        self.matrix = self.matrix[keep]

    def nearest(self, query: np.ndarray, now_s: float) -> Neighbour | None:
        """The most similar live entry (cosine similarity of unit vectors), or None."""
        if not len(self.lookup_ids) or query.shape != (self.dimensions,):
            return None
        # einsum, not `@`: a single-threaded scan. BLAS would spread a matrix-vector product
        # over threads that, on a busy 2-core box, wait on each other (10k rows: 1.3 ms
        # with einsum, 23 ms with `@` measured under load); beyond ~10k rows both are bound
        # by memory bandwidth.
        similarities = np.einsum("ij,j->i", self.matrix, query)
        similarities[self.expires_s <= now_s] = -2.0  # expired: never a neighbour
        best = int(np.argmax(similarities))
        if similarities[best] < -1.0:
            return None
        return Neighbour(self.lookup_ids[best], float(similarities[best]), self.entry_keys[best])

    def live_count(self, now_s: float) -> int:
        return int(np.count_nonzero(self.expires_s > now_s))

    def prune(self, now_s: float) -> None:
        """Drop expired rows (they are never a neighbour; this bounds the memory)."""
        expired = self.expires_s <= now_s
        if expired.any():
            self.remove({self.lookup_ids[i] for i in np.flatnonzero(expired)})


class SemanticIndex:
    """Bucket indexes decrypted in this process, least recently used dropped first. The store
    stays the truth: a caller refreshes a bucket from it before searching (rows written by
    another process appear, evicted or expired ones disappear)."""

    def __init__(self, buckets_max: int = BUCKETS_IN_MEMORY_MAX) -> None:
        self.buckets_max = buckets_max
        self._buckets: OrderedDict[str, BucketIndex] = OrderedDict()
        self.lock = threading.Lock()  # refreshes run in worker threads

    def get(self, bucket_id: str) -> BucketIndex | None:
        with self.lock:
            found = self._buckets.get(bucket_id)
            if found is not None:
                self._buckets.move_to_end(bucket_id)
            return found

    def put(self, bucket_id: str, index: BucketIndex) -> None:
        with self.lock:
            self._buckets[bucket_id] = index
            self._buckets.move_to_end(bucket_id)
            while len(self._buckets) > self.buckets_max:
                self._buckets.popitem(last=False)

    def drop(self, bucket_id: str) -> None:
        with self.lock:
            self._buckets.pop(bucket_id, None)


def epoch_s(moment: Any) -> float:
    """A row's instant (the store's text on SQLite, a datetime on PostgreSQL) as epoch s."""
    if isinstance(moment, datetime):
        return moment.timestamp()
    return datetime.fromisoformat(str(moment)).timestamp()
