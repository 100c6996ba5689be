"""AWS event-stream binary framing (application/vnd.amazon.eventstream), as used by Bedrock
ConverseStream. Pure struct + zlib so the gateway needs no botocore on the hot path.

A message is:
    u32 total_length | u32 headers_length | u32 crc32(first 8 bytes)
    headers (headers_length bytes) | payload | u32 crc32(everything before it)
Each header: u8 name_length, name, u8 value_type, value (type-dependent length).

The decoder is incremental (feed bytes as they arrive, take complete messages out) and
bounded: a frame claiming more than MAX_MESSAGE_BYTES is refused before it is buffered, so a
corrupt length cannot make the gateway wait for (or allocate) gigabytes.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass

PRELUDE_BYTES = 12
MESSAGE_CRC_BYTES = 4
MIN_MESSAGE_BYTES = PRELUDE_BYTES + MESSAGE_CRC_BYTES
# AWS documents 16 MiB payload and 128 KiB headers as the service maxima.
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
MAX_HEADERS_BYTES = 128 * 1024
MAX_MESSAGE_BYTES = MIN_MESSAGE_BYTES + MAX_HEADERS_BYTES + MAX_PAYLOAD_BYTES

HeaderValue = bool | int | bytes | str | uuid.UUID


class EventStreamError(Exception):
    """The byte stream is not valid event-stream framing (CRC mismatch, bad lengths, …)."""


@dataclass(frozen=True, slots=True)
class EventStreamMessage:
    headers: dict[str, HeaderValue]
    payload: bytes

    @property
    def message_type(self) -> str:
        return str(self.headers.get(":message-type", "event"))

    @property
    def event_type(self) -> str | None:
        value = self.headers.get(":event-type")
        return str(value) if value is not None else None

    @property
    def exception_type(self) -> str | None:
        value = self.headers.get(":exception-type") or self.headers.get(":error-code")
        return str(value) if value is not None else None


def _crc(data: bytes | memoryview, start: int = 0) -> int:
    return zlib.crc32(data, start) & 0xFFFFFFFF


def decode_headers(raw: bytes) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    offset = 0
    end = len(raw)
    try:
        while offset < end:
            name_length = raw[offset]
            offset += 1
            name = raw[offset : offset + name_length].decode("utf-8")
            offset += name_length
            value_type = raw[offset]
            offset += 1
            value: HeaderValue
            if value_type == 0:
                value = True
            elif value_type == 1:
                value = False
            elif value_type == 2:
                (value,) = struct.unpack_from(">b", raw, offset)
                offset += 1
            elif value_type == 3:
                (value,) = struct.unpack_from(">h", raw, offset)
                offset += 2
            elif value_type == 4:
                (value,) = struct.unpack_from(">i", raw, offset)
                offset += 4
            elif value_type in (5, 8):  # long, timestamp (ms since epoch)
                (value,) = struct.unpack_from(">q", raw, offset)
                offset += 8
            elif value_type in (6, 7):  # bytes, string: u16 length prefix
                (length,) = struct.unpack_from(">H", raw, offset)
                offset += 2
                chunk = raw[offset : offset + length]
                if len(chunk) != length:
                    raise EventStreamError("header value runs past the headers block")
                value = chunk if value_type == 6 else chunk.decode("utf-8")
                offset += length
            elif value_type == 9:
                chunk = raw[offset : offset + 16]
                if len(chunk) != 16:
                    raise EventStreamError("uuid header runs past the headers block")
                value = uuid.UUID(bytes=chunk)
                offset += 16
            else:
                raise EventStreamError(f"unknown header value type {value_type}")
            if offset > end:
                raise EventStreamError("header runs past the headers block")
            headers[name] = value
    except (struct.error, IndexError, UnicodeDecodeError) as error:
        raise EventStreamError(f"corrupt headers: {type(error).__name__}") from None
    return headers


class EventStreamDecoder:
    """Feed bytes in, get complete, CRC-checked messages out. The messages before a corrupt
    one are delivered first, whatever size the reads come in: the corruption is raised by the
    next `feed` or by `finish`, so a stream that started keeps what it streamed (a read that
    carried a good frame and a bad one must not look like a stream that never started)."""

    def __init__(self, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._buffer = bytearray()
        self._max_message_bytes = max_message_bytes
        self._error: EventStreamError | None = None

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete message still buffered (non-zero at EOF = truncated)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[EventStreamMessage]:
        self.finish()
        self._buffer.extend(data)
        messages: list[EventStreamMessage] = []
        try:
            self._decode(messages)
        except EventStreamError as error:
            if not messages:
                raise
            self._error = error
        return messages

    def finish(self) -> None:
        """Raise the corruption found after the messages already delivered, if any."""
        if self._error is not None:
            raise self._error

    def _decode(self, messages: list[EventStreamMessage]) -> None:
        while len(self._buffer) >= PRELUDE_BYTES:
            total_length, headers_length, prelude_crc = struct.unpack_from(">III", self._buffer, 0)
            if _crc(bytes(self._buffer[:8])) != prelude_crc:
                raise EventStreamError("prelude CRC mismatch")
            if total_length < MIN_MESSAGE_BYTES or total_length > self._max_message_bytes:
                raise EventStreamError(f"implausible message length {total_length}")
            if (
                headers_length > MAX_HEADERS_BYTES
                or headers_length > total_length - MIN_MESSAGE_BYTES
            ):
                raise EventStreamError(f"implausible headers length {headers_length}")
            if len(self._buffer) < total_length:
                break
            frame = bytes(self._buffer[:total_length])
            del self._buffer[:total_length]
            (message_crc,) = struct.unpack_from(">I", frame, total_length - MESSAGE_CRC_BYTES)
            if _crc(frame[: total_length - MESSAGE_CRC_BYTES]) != message_crc:
                raise EventStreamError("message CRC mismatch")
            headers_end = PRELUDE_BYTES + headers_length
            headers = decode_headers(frame[PRELUDE_BYTES:headers_end])
            payload = frame[headers_end : total_length - MESSAGE_CRC_BYTES]
            messages.append(EventStreamMessage(headers=headers, payload=payload))


def _encode_header(name: str, value: HeaderValue) -> bytes:
    encoded_name = name.encode("utf-8")
    prefix = struct.pack(">B", len(encoded_name)) + encoded_name
    if value is True:
        return prefix + b"\x00"
    if value is False:
        return prefix + b"\x01"
    if isinstance(value, int):
        return prefix + b"\x04" + struct.pack(">i", value)
    if isinstance(value, uuid.UUID):
        return prefix + b"\x09" + value.bytes
    if isinstance(value, bytes):
        return prefix + b"\x06" + struct.pack(">H", len(value)) + value
    encoded = str(value).encode("utf-8")
    return prefix + b"\x07" + struct.pack(">H", len(encoded)) + encoded


def encode_message(headers: dict[str, HeaderValue], payload: bytes) -> bytes:
    """Build one framed message (used by the Bedrock fake upstream and by tests)."""
    raw_headers = b"".join(_encode_header(name, value) for name, value in headers.items())
    total_length = PRELUDE_BYTES + len(raw_headers) + len(payload) + MESSAGE_CRC_BYTES
    prelude = struct.pack(">II", total_length, len(raw_headers))
    prelude += struct.pack(">I", _crc(prelude))
    body = prelude + raw_headers + payload
    return body + struct.pack(">I", _crc(body))


def encode_event(event_type: str, payload: bytes) -> bytes:
    return encode_message(
        {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
        payload,
    )


def encode_exception(exception_type: str, payload: bytes) -> bytes:
    return encode_message(
        {
            ":exception-type": exception_type,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        payload,
    )
