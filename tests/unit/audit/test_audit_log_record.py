"""The canonical record: leaf bytes are exactly the documented layout, unambiguous, and an
export line round-trips to the same record and the same leaf hash."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from types import SimpleNamespace
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.application import LedgerApplication
from domain.audit_log import (
    LeafFormatError,
    StoredRecord,
    export_record,
    leaf_bytes,
    leaf_hash,
    node_hash,
    record_from_export,
    record_from_leaf,
    record_leaf_hash,
)
from projections.audit_tree import _request_id_of, record_of

records = st.builds(
    StoredRecord,
    position=st.integers(min_value=0, max_value=2**64 - 1),
    originator_id=st.uuids(),
    originator_version=st.integers(min_value=0, max_value=2**64 - 1),
    topic=st.text(max_size=60),
    state=st.binary(max_size=300),
)


def test_leaf_bytes_follow_the_documented_layout_byte_for_byte():
    record = StoredRecord(
        position=7,
        originator_id=UUID("00112233-4455-6677-8899-aabbccddeeff"),
        originator_version=3,
        topic="domain.account:Account.ToppedUp",
        state=b'{"amount":"20"}',
    )
    topic = record.topic.encode()
    expected = (
        b"\x01"
        + (7).to_bytes(8, "big")
        + bytes.fromhex("00112233445566778899aabbccddeeff")
        + (3).to_bytes(8, "big")
        + struct.pack(">I", len(topic))
        + topic
        + struct.pack(">I", len(record.state))
        + record.state
    )
    assert leaf_bytes(record) == expected
    assert leaf_hash(expected) == hashlib.sha256(b"\x00" + expected).digest()
    assert record_leaf_hash(record) == leaf_hash(expected)


def test_node_hash_is_sha256_of_0x01_left_right():
    left, right = b"L" * 32, b"R" * 32
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert node_hash(left, right) != node_hash(right, left)


@given(records)
def test_leaf_bytes_decode_back_to_the_same_record(record):
    assert record_from_leaf(leaf_bytes(record)) == record


@given(records)
def test_an_export_line_survives_json_and_gives_the_same_leaf_hash(record):
    line = json.loads(json.dumps(export_record(record)))
    assert record_from_export(line) == record
    assert line["leaf_hash"] == record_leaf_hash(record).hex()
    assert base64.b64decode(line["state"]) == record.state


@given(records, records)
def test_two_different_records_never_share_leaf_bytes(first, second):
    if first != second:
        assert leaf_bytes(first) != leaf_bytes(second)


def test_moving_bytes_between_topic_and_state_changes_the_leaf():
    originator = uuid4()
    one = StoredRecord(1, originator, 1, "ab", b"c")
    two = StoredRecord(1, originator, 1, "a", b"bc")
    assert leaf_bytes(one) != leaf_bytes(two)


def test_malformed_leaf_bytes_are_rejected_with_a_format_error():
    good = leaf_bytes(StoredRecord(1, uuid4(), 1, "t", b"state"))
    for bad in (good[:10], good[:-1], good + b"x", b"\x02" + good[1:]):
        with pytest.raises(LeafFormatError):
            record_from_leaf(bad)


def test_malformed_export_lines_are_rejected_with_a_format_error():
    good = export_record(StoredRecord(1, uuid4(), 1, "t", b"state"))
    for field, value in (
        ("position", "1"),
        ("position", True),
        ("position", -1),
        ("version", None),
        ("aggregate_id", "not-a-uuid"),
        ("state", "!!!"),
        ("topic", 3),
    ):
        with pytest.raises(LeafFormatError):
            record_from_export({**good, field: value})


def test_the_leaf_index_reads_a_request_id_from_any_state_json_reads() -> None:
    """The Merkle log reads `request_id` out of raw states with orjson and, for what orjson
    refuses (NaN, a lone surrogate), with json: the same id either way; a notification's id
    comes as a UUID or as text."""
    app = LedgerApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    plain = b'{"amount":1,"request_id":"lg_req_abc","nested":{"request_id":"lg_req_no"}}'
    refused = b'{"latency":NaN,"note":"\\ud800","request_id":"lg_req_abc"}'
    other = b'{"request_id":"not-a-request"}'
    for state, expected in ((plain, "lg_req_abc"), (refused, "lg_req_abc"), (other, None)):
        notification = SimpleNamespace(state=state)
        assert _request_id_of(app, notification) == expected
    oid = uuid4()
    for given_id in (oid, str(oid)):
        record = record_of(
            SimpleNamespace(
                id=3, originator_id=given_id, originator_version=2, topic="t", state=plain
            )
        )
        assert record.originator_id == oid and type(record.originator_id) is UUID
