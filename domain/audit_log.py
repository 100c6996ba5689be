"""The canonical record of the tamper-evident log: one stored event, its leaf bytes and hash.

Every stored event, in global log order, is one leaf of an append-only RFC 9162 Merkle
tree (see `domain.merkle`). The Kafka relay publishes the same record, so downstream
systems can check what they receive against the signed checkpoints.

A `StoredRecord` is what the event store's recorder yields from `select_notifications`:
`position` is the notification id (its place in the global log; PostgreSQL positions may
have gaps from rolled-back sequence values, the leaf carries the position, the leaf
*index* is the ordinal in log order), `originator_id`/`originator_version` identify the
aggregate event, `topic` names its class and `state` is the stored bytes exactly as
recorded (JSON, or compressed/encrypted bytes when a cipher is configured).

Leaf bytes, format version 1 (all integers unsigned big-endian; nothing else, no padding):

    offset  size  field
    0       1     format version, 0x01
    1       8     position              (uint64)
    9       16    originator id         (the UUID's 16 bytes, RFC 4122 order)
    25      8     originator version    (uint64)
    33      4     topic length T        (uint32)
    37      T     topic                 (UTF-8)
    37+T    4     state length S        (uint32)
    41+T    S     state                 (the stored bytes, verbatim)

Every field is either fixed-width or length-prefixed, so two different records never have
the same leaf bytes. Leaf hash = SHA-256(0x00 || leaf bytes), node hash = SHA-256(0x01 ||
left || right) (RFC 9162 section 2.1.1; the prefixes keep a leaf from posing as a node).

An export line (`export_record`) is JSON-safe: `position`, `aggregate_id` (the UUID in its
canonical hyphenated lower-case form), `version`, `topic`, `state` (standard base64 with
padding) and `leaf_hash` (lower-case hex). An outside program recomputes the leaf from the
first five fields with the table above.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass
from typing import Any
from uuid import UUID

LEAF_FORMAT_VERSION = 1
LEAF_HASH_PREFIX = b"\x00"
NODE_HASH_PREFIX = b"\x01"
# Limits of the encoding itself: uint64 integers, uint32 lengths.
UINT64_MAX = 2**64 - 1
FIELD_BYTES_MAX = 2**32 - 1

_HEADER = struct.Struct(">BQ16sQ")  # version, position, originator id, originator version
_LENGTH = struct.Struct(">I")


class LeafFormatError(ValueError):
    """Leaf bytes or an export line that do not follow the documented format."""


@dataclass(frozen=True)
class StoredRecord:
    position: int
    originator_id: UUID
    originator_version: int
    topic: str
    state: bytes


def _check_record(record: StoredRecord) -> None:
    if not 0 <= record.position <= UINT64_MAX:
        raise LeafFormatError(f"position {record.position} outside 0..2^64-1")
    if not 0 <= record.originator_version <= UINT64_MAX:
        raise LeafFormatError(f"version {record.originator_version} outside 0..2^64-1")


def leaf_bytes(record: StoredRecord) -> bytes:
    """The canonical serialisation of `record` (format version 1, see the module docstring)."""
    _check_record(record)
    topic = record.topic.encode("utf-8")
    state = bytes(record.state)
    if len(topic) > FIELD_BYTES_MAX or len(state) > FIELD_BYTES_MAX:
        raise LeafFormatError("topic or state longer than 2^32-1 bytes")
    return b"".join(
        (
            _HEADER.pack(
                LEAF_FORMAT_VERSION,
                record.position,
                record.originator_id.bytes,
                record.originator_version,
            ),
            _LENGTH.pack(len(topic)),
            topic,
            _LENGTH.pack(len(state)),
            state,
        )
    )


def record_from_leaf(leaf: bytes) -> StoredRecord:
    """Decode leaf bytes; raises LeafFormatError unless they are exactly one v1 leaf."""
    if len(leaf) < _HEADER.size + 2 * _LENGTH.size:
        raise LeafFormatError("leaf shorter than its fixed header")
    version, position, originator, originator_version = _HEADER.unpack_from(leaf, 0)
    if version != LEAF_FORMAT_VERSION:
        raise LeafFormatError(f"unknown leaf format version {version}")
    offset = _HEADER.size
    (topic_length,) = _LENGTH.unpack_from(leaf, offset)
    offset += _LENGTH.size
    topic = leaf[offset : offset + topic_length]
    offset += topic_length
    if len(topic) != topic_length or offset + _LENGTH.size > len(leaf):
        raise LeafFormatError("leaf truncated inside its topic")
    (state_length,) = _LENGTH.unpack_from(leaf, offset)
    offset += _LENGTH.size
    state = leaf[offset : offset + state_length]
    if len(state) != state_length or offset + state_length != len(leaf):
        raise LeafFormatError("leaf state length does not match the bytes that follow")
    try:
        topic_text = topic.decode("utf-8")
    except UnicodeDecodeError as error:
        raise LeafFormatError("leaf topic is not UTF-8") from error
    return StoredRecord(position, UUID(bytes=originator), originator_version, topic_text, state)


def leaf_hash(leaf: bytes) -> bytes:
    """RFC 9162 leaf hash: SHA-256(0x00 || leaf)."""
    return hashlib.sha256(LEAF_HASH_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(NODE_HASH_PREFIX + left + right).digest()


def record_leaf_hash(record: StoredRecord) -> bytes:
    return leaf_hash(leaf_bytes(record))


def export_record(record: StoredRecord) -> dict[str, Any]:
    """The JSON-safe form of a record (an export line, the Kafka message value)."""
    return {
        "position": record.position,
        "aggregate_id": str(record.originator_id),
        "version": record.originator_version,
        "topic": record.topic,
        "state": base64.b64encode(record.state).decode("ascii"),
        "leaf_hash": record_leaf_hash(record).hex(),
    }


def _integer_field(data: dict[str, Any], name: str) -> int:
    value = data.get(name)
    # bool is an int in Python; a JSON true is not a position.
    if not isinstance(value, int) or isinstance(value, bool):
        raise LeafFormatError(f"export field {name!r} must be an integer")
    return value


def record_from_export(data: dict[str, Any]) -> StoredRecord:
    """Parse an export line. The `leaf_hash` field, if present, is NOT trusted here: the
    caller compares it with `record_leaf_hash` of the result (that comparison is the check)."""
    if not isinstance(data, dict):
        raise LeafFormatError("export line must be a JSON object")
    topic = data.get("topic")
    state = data.get("state")
    aggregate_id = data.get("aggregate_id")
    if not isinstance(topic, str):
        raise LeafFormatError("export field 'topic' must be a string")
    if not isinstance(state, str):
        raise LeafFormatError("export field 'state' must be base64 text")
    if not isinstance(aggregate_id, str):
        raise LeafFormatError("export field 'aggregate_id' must be a UUID string")
    try:
        originator_id = UUID(aggregate_id)
    except ValueError as error:
        raise LeafFormatError("export field 'aggregate_id' is not a UUID") from error
    try:
        state_bytes = base64.b64decode(state, validate=True)
    except (binascii.Error, ValueError) as error:
        raise LeafFormatError("export field 'state' is not valid base64") from error
    record = StoredRecord(
        position=_integer_field(data, "position"),
        originator_id=originator_id,
        originator_version=_integer_field(data, "version"),
        topic=topic,
        state=state_bytes,
    )
    _check_record(record)
    return record
