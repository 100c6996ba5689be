"""Tamper evidence, shown: 1,000 random mutations of a real store (byte flips in stored
state, deleted events, swapped positions, inserted events, a checkpoint re-signed with
another key), each made with SQL on the event store or the checkpoint table, then exported
and verified. Every one is detected, with its kind and the right position, on SQLite and on
PostgreSQL. Each mutation is undone before the next (the pristine rows are kept beside)."""

from __future__ import annotations

import base64
import json
import random
import secrets
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain.audit_log import StoredRecord, export_record, leaf_bytes, record_from_export
from projections.audit_verify import export, verify_export
from projections.signed_note import Signer
from tests.support.audit_store import AuditStore
from tests.support.postgres import create_schema

MUTATIONS_PER_BACKEND = 1000


@pytest.fixture
def scratch(tmp_path):
    """Exports are rewritten a thousand times: on tmpfs when there is one, to keep it quick."""
    shm = Path("/dev/shm")
    directory = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() else tmp_path / "scratch"
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgres"])
def audit_store(request, scratch):
    url = None
    if request.param == "postgres":
        url = create_schema(
            request.getfixturevalue("postgres_database"), "audit_" + secrets.token_hex(5)
        )
    store = AuditStore(url, scratch / "data", topups=40)
    try:
        yield store
    finally:
        store.close()


def test_the_untouched_store_verifies(audit_store, tmp_path):
    export(audit_store.merkle, tmp_path / "export")
    report = verify_export(tmp_path / "export", audit_store.signer.verifier.vkey())
    assert report.ok, report.divergence
    assert report.verified_size == audit_store.checkpoint_sizes[-1] == report.leaves
    assert report.checkpoints == len(audit_store.checkpoint_sizes) >= 4


def test_a_thousand_random_mutations_are_each_detected_at_the_right_position(audit_store, scratch):
    rng = random.Random(13)
    vkey = audit_store.signer.verifier.vkey()
    kinds: Counter[str] = Counter()
    started = time.monotonic()
    for number in range(MUTATIONS_PER_BACKEND):
        name = AuditStore.MUTATIONS[number % len(AuditStore.MUTATIONS)]
        expected = audit_store.mutate(name, rng)
        directory = scratch / f"export-{number % 2}"
        export(audit_store.merkle, directory, catch_up=False)
        report = verify_export(directory, vkey)
        audit_store.restore()
        found = report.divergence
        assert found is not None, f"mutation {number} ({name}) went undetected"
        assert (
            found.kind,
            found.position,
            found.checkpoint_size if expected.checkpoint_size else None,
        ) == (
            expected.kind,
            expected.position,
            expected.checkpoint_size,
        ), f"mutation {number} ({name}): {found}"
        kinds[found.kind] += 1
    elapsed = time.monotonic() - started
    assert sum(kinds.values()) == MUTATIONS_PER_BACKEND
    assert set(kinds) == {"altered", "missing", "reordered", "inserted", "bad_signature"}
    print(f"{MUTATIONS_PER_BACKEND} mutations detected in {elapsed:.1f} s: {dict(kinds)}")
    # After all of that, the restored store verifies again.
    export(audit_store.merkle, scratch / "final", catch_up=False)
    assert verify_export(scratch / "final", vkey).ok


def _lines(path):
    return [json.loads(text) for text in path.read_text().splitlines()]


def _write(path, lines):
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


@pytest.fixture
def sqlite_export(scratch):
    store = AuditStore(None, scratch / "data", topups=20)
    try:
        export(store.merkle, scratch / "export")
        yield store, scratch / "export"
    finally:
        store.close()


def test_an_edited_export_is_caught_even_when_the_leaf_hash_is_rewritten_too(sqlite_export):
    store, directory = sqlite_export
    vkey = store.signer.verifier.vkey()
    events = directory / "events.jsonl"
    original = _lines(events)
    # The record and its recorded leaf hash changed together: only the signed root notices,
    # and the report names the checkpoint window.
    forged = [dict(line) for line in original]
    target = forged[5]
    record = record_from_export(target)
    changed = StoredRecord(
        record.position, record.originator_id, record.originator_version, record.topic, b"{}"
    )
    target.update(export_record(changed))
    target["leaf"] = base64.b64encode(leaf_bytes(changed)).decode()
    _write(events, forged)
    found = verify_export(directory, vkey).divergence
    assert found is not None and found.kind == "altered"
    assert found.checkpoint_size == store.checkpoint_sizes[0] and found.position is not None
    assert "signed root" in found.detail

    # A line removed from the export: the leaf index jumps.
    _write(events, original[:3] + original[4:])
    found = verify_export(directory, vkey).divergence
    assert (found.kind, found.leaf_index) == ("missing", 3)

    # The tail cut off below the latest checkpoint.
    _write(events, original[:-4])
    found = verify_export(directory, vkey).divergence
    assert found.kind == "missing" and found.checkpoint_size == store.checkpoint_sizes[-1]

    # Two lines exchanged: the first one out of place is named.
    _write(events, original[:2] + [original[3], original[2]] + original[4:])
    found = verify_export(directory, vkey).divergence
    assert found.kind == "reordered" and found.position == original[3]["position"]  # out of place

    # Not JSON.
    events.write_text("{nope\n")
    assert verify_export(directory, vkey).divergence.kind == "malformed"

    # The untouched export under the wrong key: bad signature at the first checkpoint.
    _write(events, original)
    other = Signer(store.signer.name, Ed25519PrivateKey.generate()).verifier.vkey()
    found = verify_export(directory, other).divergence
    assert (found.kind, found.checkpoint_size) == ("bad_signature", store.checkpoint_sizes[0])
    assert verify_export(directory, vkey).ok


def _top_up(store, reference):
    from decimal import Decimal

    from domain import commands as c
    from domain.writer import run_now

    run_now(
        store.app,
        c.TopUp(
            project_id=store.project_id, amount=Decimal("1"), currency="USD", reference=reference
        ),
    )


def test_positions_with_gaps_from_rolled_back_sequence_values_still_make_one_tree(
    postgres_database, scratch
):
    url = create_schema(postgres_database, "gaps_" + secrets.token_hex(5))
    store = AuditStore(url, scratch / "data", topups=5)
    try:
        for number in range(3):
            # A transaction that took a position and rolled back leaves a gap for good.
            store.events(
                "SELECT nextval(pg_get_serial_sequence('ledgergate_events', 'notification_id'))"
            )
            _top_up(store, f"after-gap-{number}")
        store.merkle.catch_up()
        store.merkle.checkpoint()
        leaves = store.merkle.leaves(-1, 1000)
        positions = [leaf.position for leaf in leaves]
        assert [leaf.leaf_index for leaf in leaves] == list(range(len(leaves)))
        assert positions[-1] - positions[0] + 1 > len(positions)  # there are gaps
        export(store.merkle, scratch / "export")
        report = verify_export(scratch / "export", store.signer.verifier.vkey())
        assert report.ok, report.divergence
        assert report.verified_size == len(leaves)
    finally:
        store.close()


def test_two_followers_on_one_store_build_one_tree(audit_store, scratch):
    from projections.audit_tree import MerkleLog

    other = MerkleLog(audit_store.app, audit_store.store, signer=audit_store.signer, every_events=4)
    for number in range(12):
        _top_up(audit_store, f"interleaved-{number}")
        (other if number % 3 else audit_store.merkle).catch_up()
    other.catch_up()
    audit_store.merkle.catch_up()
    events = audit_store.app.recorder.max_notification_id()
    assert other.size() == audit_store.merkle.frontier.size == other.frontier.size
    assert audit_store.merkle.leaves(-1, 10_000)[-1].position == events
    export(audit_store.merkle, scratch / "export")
    report = verify_export(scratch / "export", audit_store.signer.verifier.vkey())
    assert report.ok, report.divergence
    assert report.checkpoints > len(audit_store.checkpoint_sizes)
