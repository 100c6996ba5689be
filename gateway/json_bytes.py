"""JSON encoding that never recurses: orjson for speed, an iterative encoder past its depth.

orjson refuses values nested deeper than 255 levels ("Recursion limit reached"), and a
recursive Python encoder hits the interpreter's recursion limit; the edge accepts bodies
up to `validation.NESTING_DEPTH_MAX` (400) levels deep. `dumps` tries orjson and falls back
to `dumps_iterative`, whose output is byte-for-byte what orjson would produce (it encodes
every leaf with orjson and assembles the containers itself with an explicit stack), so a
hash of the encoding is the same whichever path produced it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

_OPEN_ARRAY, _CLOSE_ARRAY, _OPEN_OBJECT, _CLOSE_OBJECT = b"[", b"]", b"{", b"}"


def dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else None)
    except orjson.JSONEncodeError as error:
        if "Recursion limit" not in str(error):
            raise
        return dumps_iterative(value, sort_keys=sort_keys)


def dumps_iterative(value: Any, *, sort_keys: bool = False) -> bytes:
    """The same bytes as `orjson.dumps`, with an explicit stack instead of recursion."""
    out: list[bytes] = []
    # Each entry: a value to encode, or a literal chunk (bytes) to emit as is.
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Literal):
            out.append(item.chunk)
        elif isinstance(item, dict):
            keys = list(item)
            if sort_keys:
                keys.sort()
            pending: list[Any] = [_Literal(_OPEN_OBJECT)]
            for index, key in enumerate(keys):
                if not isinstance(key, str):
                    raise orjson.JSONEncodeError("Dict key must be str")
                prefix = b"," if index else b""
                pending.append(_Literal(prefix + orjson.dumps(key) + b":"))
                pending.append(item[key])
            pending.append(_Literal(_CLOSE_OBJECT))
            stack.extend(reversed(pending))
        elif isinstance(item, list | tuple):
            pending = [_Literal(_OPEN_ARRAY)]
            for index, element in enumerate(item):
                if index:
                    pending.append(_Literal(b","))
                pending.append(element)
            pending.append(_Literal(_CLOSE_ARRAY))
            stack.extend(reversed(pending))
        else:
            out.append(orjson.dumps(item))
    return b"".join(out)


def canonical_sha256(value: Any) -> str:
    """SHA-256 of the sorted-keys encoding: what the ledger records as a content hash."""
    return hashlib.sha256(dumps(value, sort_keys=True)).hexdigest()


class _Literal:
    __slots__ = ("chunk",)

    def __init__(self, chunk: bytes) -> None:
        self.chunk = chunk
