"""The AWS event-stream decoder: agrees with botocore's, checks both CRCs, is incremental
and bounded."""

from __future__ import annotations

import struct
import uuid

import pytest
from botocore.eventstream import EventStreamBuffer
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.providers.eventstream import (
    EventStreamDecoder,
    EventStreamError,
    encode_event,
    encode_exception,
    encode_message,
)


def test_messages_encoded_here_are_decoded_identically_by_botocore():
    frame = encode_event("contentBlockDelta", b'{"delta":{"text":"hi"}}')
    botocore_buffer = EventStreamBuffer()
    botocore_buffer.add_data(frame)
    (theirs,) = list(botocore_buffer)
    (ours,) = EventStreamDecoder().feed(frame)
    assert ours.payload == theirs.payload
    assert ours.headers == theirs.headers
    assert ours.event_type == "contentBlockDelta"


def test_every_header_value_type_round_trips_through_botocore():
    headers = {
        "flag-true": True,
        "flag-false": False,
        "an-int": -42,
        "some-bytes": b"\x00\x01",
        "a-string": "héllo",
        "an-id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    }
    frame = encode_message(headers, b"{}")
    botocore_buffer = EventStreamBuffer()
    botocore_buffer.add_data(frame)
    (theirs,) = list(botocore_buffer)
    (ours,) = EventStreamDecoder().feed(frame)
    assert ours.headers["a-string"] == theirs.headers["a-string"] == "héllo"
    assert ours.headers["an-int"] == theirs.headers["an-int"] == -42
    assert ours.headers["flag-true"] is True and ours.headers["flag-false"] is False
    assert ours.headers["some-bytes"] == b"\x00\x01"
    assert ours.headers["an-id"] == headers["an-id"]


def test_a_stream_fed_one_byte_at_a_time_yields_each_message_once_complete():
    frames = encode_event("messageStart", b'{"role":"assistant"}') + encode_event(
        "messageStop", b'{"stopReason":"end_turn"}'
    )
    decoder = EventStreamDecoder()
    seen = []
    for byte in frames:
        seen.extend(decoder.feed(bytes([byte])))
    assert [message.event_type for message in seen] == ["messageStart", "messageStop"]
    assert decoder.pending_bytes == 0


def test_a_corrupted_payload_fails_the_message_crc():
    frame = bytearray(encode_event("contentBlockDelta", b'{"delta":{"text":"hi"}}'))
    frame[-6] ^= 0x01
    with pytest.raises(EventStreamError, match="message CRC"):
        EventStreamDecoder().feed(bytes(frame))


def test_the_messages_before_a_corrupt_one_in_the_same_read_are_delivered_first():
    # One network read may carry a good frame and a bad one (a large-buffer transport reads
    # all that arrived): the good one is delivered, the corruption is raised after it.
    good = encode_event("messageStart", b'{"role":"assistant"}')
    bad = bytearray(encode_event("contentBlockDelta", b'{"delta":{"text":"hi"}}'))
    bad[-6] ^= 0x01
    decoder = EventStreamDecoder()
    (message,) = decoder.feed(good + bytes(bad))
    assert message.event_type == "messageStart"
    with pytest.raises(EventStreamError, match="message CRC"):
        decoder.finish()
    with pytest.raises(EventStreamError, match="message CRC"):
        decoder.feed(b"")


def test_a_corrupted_length_fails_the_prelude_crc_before_anything_is_buffered():
    frame = bytearray(encode_event("x", b"{}"))
    frame[0:4] = struct.pack(">I", 0x7FFFFFFF)
    with pytest.raises(EventStreamError, match="prelude CRC"):
        EventStreamDecoder().feed(bytes(frame))


def test_a_plausible_crc_but_absurd_length_is_refused_rather_than_awaited():
    prelude = struct.pack(">II", 1 << 30, 0)
    import zlib

    prelude += struct.pack(">I", zlib.crc32(prelude))
    with pytest.raises(EventStreamError, match="implausible message length"):
        EventStreamDecoder().feed(prelude)


def test_an_exception_message_exposes_its_type():
    (message,) = EventStreamDecoder().feed(
        encode_exception("throttlingException", b'{"message":"slow down"}')
    )
    assert message.message_type == "exception"
    assert message.exception_type == "throttlingException"


def test_a_half_message_stays_pending_so_the_reader_can_report_truncation():
    frame = encode_event("metadata", b'{"usage":{}}')
    decoder = EventStreamDecoder()
    assert decoder.feed(frame[: len(frame) // 2]) == []
    assert decoder.pending_bytes == len(frame) // 2


payloads = st.lists(st.binary(max_size=300), min_size=1, max_size=6)


@settings(max_examples=150, deadline=None)
@given(payloads=payloads, cut_points=st.lists(st.integers(min_value=0, max_value=4000), max_size=8))
def test_any_split_of_a_valid_stream_decodes_to_the_same_messages(payloads, cut_points):
    stream = b"".join(encode_event(f"event{i}", payload) for i, payload in enumerate(payloads))
    cuts = sorted({min(point, len(stream)) for point in cut_points} | {0, len(stream)})
    decoder = EventStreamDecoder()
    decoded = []
    for start, end in zip(cuts, cuts[1:], strict=False):
        decoded.extend(decoder.feed(stream[start:end]))
    assert [message.payload for message in decoded] == payloads
    assert decoder.pending_bytes == 0


@settings(max_examples=300, deadline=None)
@given(
    payload=st.binary(min_size=1, max_size=200),
    position=st.integers(min_value=0),
    flip=st.integers(min_value=1, max_value=255),
)
def test_any_single_corrupted_byte_is_an_event_stream_error_never_a_crash_or_a_wrong_message(
    payload, position, flip
):
    frame = bytearray(encode_event("contentBlockDelta", payload))
    frame[position % len(frame)] ^= flip
    decoder = EventStreamDecoder()
    try:
        messages = decoder.feed(bytes(frame))
    except EventStreamError:
        return
    # A corrupted length can only make the decoder wait for more bytes: never a bogus message.
    assert messages == []
    assert decoder.pending_bytes == len(frame)
