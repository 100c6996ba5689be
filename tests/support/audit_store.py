"""A small real store with a Merkle log and signed checkpoints, and the tampering an
attacker with SQL access can do to it: flip a byte of a stored event, delete one, swap two
positions, insert a forged event (renumbering the ones after it), re-sign a checkpoint with
another key. Every mutation can be undone (the pristine tables are kept beside), so one
store serves many mutations quickly, on SQLite and on PostgreSQL."""

from __future__ import annotations

import random
import re
import sqlite3
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain import commands as c
from domain.application import open_application
from domain.writer import run_now
from projections.audit_tree import MerkleLog
from projections.db import ReadStore
from projections.signed_note import Checkpoint, Signer, open_checkpoint

ORIGIN = "test.ledgergate/audit-log"


@dataclass
class Expected:
    kind: str
    position: int | None = None
    checkpoint_size: int | None = None


class AuditStore:
    def __init__(self, database_url: str | None, data_dir: Path, *, topups: int = 40) -> None:
        self.database_url = database_url
        self.data_dir = data_dir
        self.app = open_application(database_url, str(data_dir))
        self.store = ReadStore(database_url, str(data_dir))
        self.store.migrate()
        self.signer = Signer(ORIGIN, Ed25519PrivateKey.generate())
        self.merkle = MerkleLog(self.app, self.store, signer=self.signer, every_events=9)
        created = run_now(self.app, c.CreateProject(name="audited", currency="USD"))
        self.project_id = UUID(created.value["project_id"])
        for number in range(topups):
            run_now(
                self.app,
                c.TopUp(
                    project_id=self.project_id,
                    amount=Decimal("20") + number,
                    currency="USD",
                    reference=f"top-up-{number}",
                ),
            )
            if number % 5 == 4:
                self.merkle.catch_up()
        self.merkle.catch_up()
        self.merkle.checkpoint()
        self.postgres = database_url is not None
        if self.postgres:
            url = re.sub(r"[?&]schema=[^&]*", "", database_url or "")
            schema = re.search(r"[?&]schema=([^&]+)", database_url or "")
            options = f"-c search_path={schema.group(1)},public" if schema else ""
            self.events_db: Any = psycopg.connect(url, options=options, autocommit=True)
            self.events_db.execute("SET synchronous_commit = off")  # tampering needs no fsync
            self.views_db: Any = self.events_db
            self.table, self.pos = "ledgergate_events", "notification_id"
        else:
            self.events_db = sqlite3.connect(str(data_dir / "events.sqlite"), isolation_level=None)
            self.views_db = sqlite3.connect(str(data_dir / "views.sqlite"), isolation_level=None)
            for connection in (self.events_db, self.views_db):
                # The tampering connection needs no durability: it only slows the test.
                connection.execute("PRAGMA synchronous=OFF")
            self.table, self.pos = "stored_events", "rowid"
        self._sql(self.events_db, "DROP TABLE IF EXISTS pristine_events")
        self._sql(
            self.events_db,
            f"CREATE TABLE pristine_events AS SELECT {self.pos} AS pos, originator_id, "
            f"originator_version, topic, state FROM {self.table}",
        )
        self._sql(self.views_db, "DROP TABLE IF EXISTS pristine_checkpoints")
        self._sql(
            self.views_db, "CREATE TABLE pristine_checkpoints AS SELECT * FROM lg_audit_checkpoints"
        )
        self.checkpoint_sizes = [cp.size for cp in self.merkle.checkpoints()]
        self.covered = [leaf.position for leaf in self.merkle.leaves(-1, self.checkpoint_sizes[-1])]

    # --- SQL on the raw tables ---------------------------------------------------------------

    def _sql(self, connection: Any, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        if self.postgres:
            statement = statement.replace("?", "%s")
        cursor = connection.execute(statement, params)
        try:
            return list(cursor.fetchall())
        except Exception:  # statements without rows
            return []

    def events(self, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        return self._sql(self.events_db, statement, params)

    def restore(self) -> None:
        self.events(f"DELETE FROM {self.table}")
        self.events(
            f"INSERT INTO {self.table} (originator_id, originator_version, topic, state, {self.pos}) "
            "SELECT originator_id, originator_version, topic, state, pos FROM pristine_events"
        )
        self._sql(self.views_db, "DELETE FROM lg_audit_checkpoints")
        self._sql(
            self.views_db, "INSERT INTO lg_audit_checkpoints SELECT * FROM pristine_checkpoints"
        )

    def _move(self, source: int, target: int) -> None:
        self.events(
            f"UPDATE {self.table} SET {self.pos} = ? WHERE {self.pos} = ?", (target, source)
        )

    # --- the mutations -------------------------------------------------------------------------

    def flip_byte(self, rng: random.Random) -> Expected:
        position = rng.choice(self.covered)
        (state,) = self.events(f"SELECT state FROM {self.table} WHERE {self.pos} = ?", (position,))[
            0
        ]
        state = bytearray(state)
        state[rng.randrange(len(state))] ^= 1 << rng.randrange(8)
        self.events(
            f"UPDATE {self.table} SET state = ? WHERE {self.pos} = ?", (bytes(state), position)
        )
        return Expected("altered", position)

    def delete(self, rng: random.Random) -> Expected:
        position = rng.choice(self.covered)
        self.events(f"DELETE FROM {self.table} WHERE {self.pos} = ?", (position,))
        return Expected("missing", position)

    def swap(self, rng: random.Random) -> Expected:
        first, second = sorted(rng.sample(self.covered, 2))
        self._move(first, -1)
        self._move(second, first)
        self._move(-1, second)
        return Expected("reordered", first)

    def insert(self, rng: random.Random) -> Expected:
        position = rng.choice(self.covered)
        # Renumber every event from `position` on one up (through negatives: the position
        # is unique), then put a forged top-up at `position`.
        self.events(
            f"UPDATE {self.table} SET {self.pos} = -({self.pos} + 1) WHERE {self.pos} >= ?",
            (position,),
        )
        self.events(f"UPDATE {self.table} SET {self.pos} = -{self.pos} WHERE {self.pos} < 0")
        (topic, state) = self.events(
            f"SELECT topic, state FROM {self.table} WHERE {self.pos} = ?", (position + 1,)
        )[0]
        self.events(
            f"INSERT INTO {self.table} (originator_id, originator_version, topic, state, {self.pos}) "
            "VALUES (?, ?, ?, ?, ?)",
            (str(uuid4()) if not self.postgres else uuid4(), 1, topic, bytes(state), position),
        )
        return Expected("inserted", position)

    def resign_checkpoint(self, rng: random.Random) -> Expected:
        size = rng.choice(self.checkpoint_sizes)
        (note,) = self._sql(
            self.views_db, "SELECT note FROM lg_audit_checkpoints WHERE size = ?", (size,)
        )[0]
        checkpoint = open_checkpoint(note, self.signer.verifier)
        forger = Signer(ORIGIN, Ed25519PrivateKey.generate())
        forged = forger.sign(Checkpoint(checkpoint.origin, checkpoint.size, checkpoint.root).text())
        self._sql(
            self.views_db, "UPDATE lg_audit_checkpoints SET note = ? WHERE size = ?", (forged, size)
        )
        return Expected("bad_signature", checkpoint_size=size)

    MUTATIONS = ("flip_byte", "delete", "swap", "insert", "resign_checkpoint")

    def mutate(self, name: str, rng: random.Random) -> Expected:
        result: Expected = getattr(self, name)(rng)
        return result

    def close(self) -> None:
        self.events_db.close()
        if self.views_db is not self.events_db:
            self.views_db.close()
        self.store.close()
        self.app.close()
