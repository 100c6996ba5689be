"""The tamper-evident log, maintained behind the writer: a follower of the event log (like
the projections) appends each durable stored event, in log order, as one leaf of an RFC
9162 Merkle tree kept in the read store, and signs checkpoints of it.

Storage (migrations/*/0006_audit_merkle.sql): one row per leaf (index, position, leaf
hash, and the ids a proof request looks up), every complete interior node, one state row
(size, last hashed position) locked while appending, and every signed checkpoint. The
follower keeps the tree's compact frontier in memory and, under the state row's lock,
appends a batch: leaves, completed nodes and the new state in one transaction. If another
process moved the tree meanwhile, it reloads the frontier from the stored nodes first, so
several processes may run followers at once and the tree stays one tree.

Durability: the follower only ever reads committed events (`select_notifications`), and
on PostgreSQL the event store inserts under an EXCLUSIVE table lock, so positions commit
in order and a gap (a rolled-back sequence value) never fills in later: leaf index =
ordinal in log order, the leaf carries the position. A checkpoint covers only leaves
already stored, hence only durable events.

Checkpoints: taken when at least `every_events` leaves are unsigned, or when any are and
`interval_s` passed since the last one, or on demand. Before signing, the new root is
checked to be consistent with the previous checkpoint (an RFC 9162 consistency proof from
the stored nodes, verified) and the stored frontier is checked to produce the root.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson

from domain.application import LedgerApplication
from domain.audit_log import StoredRecord, leaf_bytes, leaf_hash
from domain.ids import REQUEST_ID_PREFIX, request_aggregate_id
from domain.merkle import (
    EMPTY_ROOT,
    Frontier,
    NodeKey,
    consistency_proof_plan,
    inclusion_proof_plan,
    plan_keys,
    proof_from_plan,
    root_plan,
    verify_consistency,
)
from projections.db import ReadStore, Tx, iso
from projections.following import BackgroundFollower
from projections.signed_note import Checkpoint, Signer

log = logging.getLogger("ledgergate.audit_tree")

LOG_NAME = "events"
NOTIFICATIONS_PER_BATCH = 1000
NODES_PER_QUERY = 400  # keys per IN (VALUES ...) lookup
POLL_INTERVAL_S = 0.2
LEAF_COLUMNS = (
    ("leaf_index", "bigint"),
    ("position", "bigint"),
    ("originator_id", "text"),
    ("originator_version", "bigint"),
    ("request_id", "text"),
    ("leaf_hash", "bytea"),
)
NODE_COLUMNS = (("level", "integer"), ("node_index", "bigint"), ("hash", "bytea"))
CHECKPOINT_EVERY_EVENTS_DEFAULT = 1000
CHECKPOINT_EVERY_EVENTS_BOUNDS = (1, 1_000_000)
CHECKPOINT_INTERVAL_S_DEFAULT = 10.0
CHECKPOINT_INTERVAL_S_BOUNDS = (0.05, 86_400.0)
REQUEST_LEAVES_MAX = 1000  # a request has ~10 events; bound what one proof call may cost


class LogInconsistent(Exception):
    """The stored tree disagrees with itself or with a signed checkpoint: never sign."""


@dataclass(frozen=True)
class StoredCheckpoint:
    size: int
    root: bytes
    note: str
    vkey: str
    created_at: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> StoredCheckpoint:
        return cls(
            int(row["size"]), bytes(row["root"]), row["note"], row["vkey"], str(row["created_at"])
        )


@dataclass(frozen=True)
class LeafRow:
    leaf_index: int
    position: int
    originator_id: str
    originator_version: int
    leaf_hash: bytes


def _uuid(value: Any) -> UUID:
    """A notification's aggregate id as a UUID (psycopg gives one already; text is parsed)."""
    return value if type(value) is UUID else UUID(str(value))


def record_of(notification: Any) -> StoredRecord:
    return StoredRecord(
        position=int(notification.id),
        originator_id=_uuid(notification.originator_id),
        originator_version=int(notification.originator_version),
        topic=str(notification.topic),
        state=bytes(notification.state),
    )


def _request_id_of(app: LedgerApplication, notification: Any) -> str | None:
    """The request an event belongs to when it names one (Request.Received, the account's
    reservation/charge/release). The Request aggregate's other events are found by
    aggregate id. Plain JSON state (the default) is searched for the field and parsed only
    when it is there, so the follower stays cheap; encrypted or compressed state is decoded
    by the application's mapper. A state that does not decode has no request id here."""
    mapper = app.mapper
    state = bytes(notification.state)
    try:
        if getattr(mapper, "cipher", None) is None and getattr(mapper, "compressor", None) is None:
            if b'"request_id"' not in state:
                return None
            try:  # orjson, a third of json's cost; json for what orjson refuses
                value = orjson.loads(state).get("request_id")
            except orjson.JSONDecodeError:
                value = json.loads(state).get("request_id")
        else:
            value = getattr(mapper.to_domain_event(notification), "request_id", None)
    except Exception:
        return None
    if isinstance(value, str) and value.startswith(REQUEST_ID_PREFIX):
        return value[:100]
    return None


def bounded(value: float, bounds: tuple[float, float], name: str) -> float:
    low, high = bounds
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}, not {value:g}")
    return value


class MerkleLog(BackgroundFollower):
    thread_name = "ledgergate-audit-tree"
    failure_message = "audit tree catch-up failed; retrying"
    log = log

    def __init__(
        self,
        app: LedgerApplication,
        store: ReadStore,
        *,
        signer: Signer | None = None,
        every_events: int = CHECKPOINT_EVERY_EVENTS_DEFAULT,
        interval_s: float = CHECKPOINT_INTERVAL_S_DEFAULT,
        decode_request_ids: bool = True,
    ) -> None:
        self.app = app
        self.store = store
        self.signer = signer
        self.every_events = int(
            bounded(every_events, CHECKPOINT_EVERY_EVENTS_BOUNDS, "every_events")
        )
        self.interval_s = bounded(interval_s, CHECKPOINT_INTERVAL_S_BOUNDS, "interval_s")
        self.decode_request_ids = decode_request_ids
        self.frontier = Frontier()
        self.last_position = 0
        self._last_checkpoint_at = time.monotonic()
        self._lock = threading.Lock()
        self._init_following()

    @property
    def origin(self) -> str | None:
        return self.signer.name if self.signer else None

    # --- reading the stored tree ---------------------------------------------------------

    def _state(self, tx: Tx, *, lock: bool) -> tuple[int, int]:
        suffix = tx.for_update if lock else ""
        row = tx.execute(
            f"SELECT size, last_position FROM lg_merkle_state WHERE log = %s{suffix}", (LOG_NAME,)
        ).fetchone()
        if row is None:
            raise LogInconsistent("the Merkle log state row is missing (migrations not applied?)")
        return int(row["size"]), int(row["last_position"])

    def nodes(self, tx: Tx, keys: Iterable[NodeKey]) -> dict[NodeKey, bytes]:
        """Stored node hashes by (level, index); level 0 are the leaf hashes."""
        wanted = sorted(set(keys))
        found: dict[NodeKey, bytes] = {}
        leaves = [index for level, index in wanted if level == 0]
        interior = [key for key in wanted if key[0] > 0]
        for start in range(0, len(leaves), NODES_PER_QUERY):
            chunk = leaves[start : start + NODES_PER_QUERY]
            marks = ",".join(["%s"] * len(chunk))
            for row in tx.execute(
                f"SELECT leaf_index, leaf_hash FROM lg_merkle_leaves WHERE leaf_index IN ({marks})",
                chunk,
            ).fetchall():
                found[(0, int(row["leaf_index"]))] = bytes(row["leaf_hash"])
        # One statement, one indexed lookup per level: `level = ? AND node_index IN (...)`
        # (a row-value IN over VALUES makes SQLite scan the whole table).
        by_level: dict[int, list[int]] = {}
        for level, index in interior:
            by_level.setdefault(level, []).append(index)
        parts: list[str] = []
        params: list[int] = []
        for level, indexes in sorted(by_level.items()):
            for start in range(0, len(indexes), NODES_PER_QUERY):
                chunk = indexes[start : start + NODES_PER_QUERY]
                parts.append(
                    "SELECT level, node_index, hash FROM lg_merkle_nodes WHERE level = %s "
                    f"AND node_index IN ({','.join(['%s'] * len(chunk))})"
                )
                params.extend([level, *chunk])
        if parts:
            for row in tx.execute(" UNION ALL ".join(parts), params).fetchall():
                found[(int(row["level"]), int(row["node_index"]))] = bytes(row["hash"])
        missing = set(wanted) - set(found)
        if missing:
            raise LogInconsistent(f"stored tree lacks {len(missing)} node(s), e.g. {min(missing)}")
        return found

    def _root(self, tx: Tx, size: int) -> bytes:
        if size == 0:
            return EMPTY_ROOT
        plan = root_plan(size)
        nodes = self.nodes(tx, plan)
        return proof_from_plan([plan], nodes)[0]

    def size(self) -> int:
        with self.store.transaction(write=False) as tx:
            return self._state(tx, lock=False)[0]

    def root(self, size: int) -> bytes:
        with self.store.transaction(write=False) as tx:
            return self._root(tx, size)

    def inclusion_proof(self, leaf_index: int, size: int) -> list[bytes]:
        plan = inclusion_proof_plan(leaf_index, size)
        with self.store.transaction(write=False) as tx:
            return proof_from_plan(plan, self.nodes(tx, plan_keys(plan)))

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        plan = consistency_proof_plan(old_size, new_size)
        with self.store.transaction(write=False) as tx:
            return proof_from_plan(plan, self.nodes(tx, plan_keys(plan)))

    def leaves(self, after_index: int = -1, limit: int = 10_000) -> list[LeafRow]:
        with self.store.transaction(write=False) as tx:
            rows = tx.execute(
                "SELECT leaf_index, position, originator_id, originator_version, leaf_hash "
                "FROM lg_merkle_leaves WHERE leaf_index > %s ORDER BY leaf_index LIMIT %s",
                (after_index, limit),
            ).fetchall()
        return [_leaf_row(row) for row in rows]

    def iter_leaves(self, batch: int = 10_000) -> Iterator[LeafRow]:
        after = -1
        while True:
            rows = self.leaves(after, batch)
            if not rows:
                return
            yield from rows
            after = rows[-1].leaf_index

    def leaves_for_request(self, request_id: str) -> list[LeafRow]:
        with self.store.transaction(write=False) as tx:
            rows = tx.execute(
                "SELECT leaf_index, position, originator_id, originator_version, leaf_hash "
                "FROM lg_merkle_leaves WHERE originator_id = %s OR request_id = %s "
                "ORDER BY leaf_index LIMIT %s",
                (str(request_aggregate_id(request_id)), request_id, REQUEST_LEAVES_MAX),
            ).fetchall()
        return [_leaf_row(row) for row in rows]

    def leaf_at_position(self, position: int) -> LeafRow | None:
        with self.store.transaction(write=False) as tx:
            row = tx.execute(
                "SELECT leaf_index, position, originator_id, originator_version, leaf_hash "
                "FROM lg_merkle_leaves WHERE position = %s",
                (position,),
            ).fetchone()
        return None if row is None else _leaf_row(row)

    # --- checkpoints -----------------------------------------------------------------------

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        with self.store.transaction(write=False) as tx:
            return self._latest_checkpoint(tx)

    def _latest_checkpoint(self, tx: Tx) -> StoredCheckpoint | None:
        row = tx.execute(
            "SELECT size, root, note, vkey, created_at FROM lg_audit_checkpoints "
            "ORDER BY size DESC LIMIT 1"
        ).fetchone()
        return None if row is None else StoredCheckpoint.from_row(row)

    def checkpoint_at(self, size: int) -> StoredCheckpoint | None:
        with self.store.transaction(write=False) as tx:
            row = tx.execute(
                "SELECT size, root, note, vkey, created_at FROM lg_audit_checkpoints WHERE size = %s",
                (size,),
            ).fetchone()
        return None if row is None else StoredCheckpoint.from_row(row)

    def checkpoints(self) -> list[StoredCheckpoint]:
        with self.store.transaction(write=False) as tx:
            rows = tx.execute(
                "SELECT size, root, note, vkey, created_at FROM lg_audit_checkpoints ORDER BY size"
            ).fetchall()
        return [StoredCheckpoint.from_row(row) for row in rows]

    def checkpoint(self) -> StoredCheckpoint | None:
        """Sign a checkpoint of every leaf stored so far (on demand, or by the policy). If
        the tree has not grown since the latest checkpoint, that one is the answer."""
        if self.signer is None:
            raise LogInconsistent("no signing key configured: cannot sign checkpoints")
        with self.store.transaction() as tx:
            size, _ = self._state(tx, lock=True)
            latest = self._latest_checkpoint(tx)
            if latest is not None and latest.size == size:
                return latest
            if size == 0:
                return None
            if latest is not None and latest.size > size:
                raise LogInconsistent(
                    f"the tree has {size} leaves but checkpoint {latest.size} was signed"
                )
            root = self._root(tx, size)
            if latest is not None:
                plan = consistency_proof_plan(latest.size, size)
                proof = proof_from_plan(plan, self.nodes(tx, plan_keys(plan)))
                if not verify_consistency(latest.size, size, latest.root, root, proof):
                    raise LogInconsistent(
                        f"tree of size {size} is not consistent with checkpoint {latest.size}"
                    )
            note = self.signer.sign(Checkpoint(self.signer.name, size, root).text())
            stored = StoredCheckpoint(
                size, root, note, self.signer.verifier.vkey(), iso(datetime.now(UTC)) or ""
            )
            tx.execute(
                "INSERT INTO lg_audit_checkpoints (size, root, note, vkey, created_at) "
                "VALUES (%s, %s, %s, %s, %s)",
                (stored.size, stored.root, stored.note, stored.vkey, stored.created_at),
            )
        self._last_checkpoint_at = time.monotonic()
        log.info("signed audit checkpoint: size %d root %s", size, root.hex()[:16])
        return stored

    def _checkpoint_due(self) -> bool:
        if self.signer is None:
            return False
        latest = self.latest_checkpoint()
        signed = latest.size if latest else 0
        unsigned = self.frontier.size - signed
        if unsigned <= 0:
            return False
        if unsigned >= self.every_events:
            return True
        return time.monotonic() - self._last_checkpoint_at >= self.interval_s

    # --- appending -------------------------------------------------------------------------

    def _load_frontier(self, tx: Tx, size: int, last_position: int) -> None:
        keys = Frontier.keys_for(size)
        nodes = self.nodes(tx, keys)
        self.frontier = Frontier(size, [nodes[key] for key in keys])
        self.last_position = last_position

    def _append(self, notifications: Sequence[Any]) -> int:
        """Append one batch under the state lock; returns how many leaves were added."""
        with self.store.transaction() as tx:
            size, last_position = self._state(tx, lock=True)
            if size != self.frontier.size or last_position != self.last_position:
                self._load_frontier(tx, size, last_position)  # another process appended
            fresh = [n for n in notifications if int(n.id) > last_position]
            if not fresh:
                return 0
            leaf_rows: list[tuple[Any, ...]] = []
            node_rows: list[tuple[Any, ...]] = []
            frontier = Frontier(self.frontier.size, self.frontier.hashes())
            for notification in fresh:
                record = record_of(notification)
                value = leaf_hash(leaf_bytes(record))
                index = frontier.size
                request_id = (
                    _request_id_of(self.app, notification) if self.decode_request_ids else None
                )
                leaf_rows.append(
                    (
                        index,
                        record.position,
                        str(record.originator_id),
                        record.originator_version,
                        request_id,
                        value,
                    )
                )
                for (level, node_index), node in frontier.append(value)[1:]:
                    node_rows.append((level, node_index, node))
            # Each in one statement on PostgreSQL (Tx.insert_rows), whatever the batch size.
            tx.insert_rows("lg_merkle_leaves", LEAF_COLUMNS, leaf_rows)
            tx.insert_rows("lg_merkle_nodes", NODE_COLUMNS, node_rows)
            new_last = int(fresh[-1].id)
            tx.execute(
                "UPDATE lg_merkle_state SET size = %s, last_position = %s WHERE log = %s",
                (frontier.size, new_last, LOG_NAME),
            )
        self.frontier = frontier
        self.last_position = new_last
        return len(fresh)

    def catch_up(self) -> int:
        """Hash every durable event not yet in the tree; sign checkpoints as they fall due.
        Returns the tree size."""
        with self._lock:
            while True:
                notifications = self.app.recorder.select_notifications(
                    start=self.last_position,
                    limit=NOTIFICATIONS_PER_BATCH,
                    inclusive_of_start=False,
                )
                if notifications:
                    self._append(notifications)
                if self._checkpoint_due():
                    self.checkpoint()
                if len(notifications) < NOTIFICATIONS_PER_BATCH:
                    return self.frontier.size

    # --- running in the background ---------------------------------------------------------

    def start(self, poll_interval_s: float = POLL_INTERVAL_S) -> MerkleLog:
        return super().start(poll_interval_s)

    def _wait_s(self, backoff_s: float) -> float:
        return min(backoff_s, self.interval_s)  # a checkpoint may fall due meanwhile


def _leaf_row(row: dict[str, Any]) -> LeafRow:
    return LeafRow(
        int(row["leaf_index"]),
        int(row["position"]),
        str(row["originator_id"]),
        int(row["originator_version"]),
        bytes(row["leaf_hash"]),
    )
