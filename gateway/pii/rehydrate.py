"""Put the real values back into a model's answer: whole texts, or a stream chunk by chunk.

The stream rehydrator never buffers the answer. It emits everything it receives at once,
except a trailing fragment that could still become a placeholder (`<`, `<PER`, `<PERSON_1`),
and that fragment is bounded by the longest placeholder of the request: the hold-back is at
most one placeholder's length, so the first token is not delayed to the end.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from gateway.pii.pseudonymize import PARTIAL_PLACEHOLDER_TAIL as _PARTIAL_TAIL
from gateway.pii.pseudonymize import PLACEHOLDER_PATTERN, Pseudonymizer


def json_string_escape(value: str) -> str:
    """A value as it must appear inside a JSON string (tool-call arguments stream as JSON text)."""
    return json.dumps(value, ensure_ascii=False)[1:-1]


def rehydrate_text(
    text: str, mapping: Pseudonymizer, escape: Callable[[str], str] | None = None
) -> str:
    """Replace every `<TYPE_n>` the mapping knows; leave unknown ones as they are."""
    if not text or len(mapping) == 0:
        return text

    def restore(match: re.Match[str]) -> str:
        value = mapping.value_for(match.group(0))
        if value is None:
            return match.group(0)
        return escape(value) if escape is not None else value

    return PLACEHOLDER_PATTERN.sub(restore, text)


def rehydrate_chat_completion(body: dict, mapping: Pseudonymizer) -> dict:
    """Restore values in a non-streamed OpenAI `chat.completion` (content and tool-call
    arguments of every choice). Mutates and returns `body`."""
    for choice in body.get("choices") or ():
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            continue
        if isinstance(message.get("content"), str):
            message["content"] = rehydrate_text(message["content"], mapping)
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                # Placeholders hold only [A-Z0-9_<>], so the JSON stays valid unless a value
                # itself needs escaping: restore inside the parsed JSON when we can.
                function["arguments"] = _rehydrate_json_text(function["arguments"], mapping)
    return body


def _rehydrate_json_text(text: str, mapping: Pseudonymizer) -> str:
    try:
        parsed = json.loads(text)
    except ValueError:
        return rehydrate_text(text, mapping)

    def walk(node: object) -> object:
        if isinstance(node, str):
            return rehydrate_text(node, mapping)
        if isinstance(node, list):
            return [walk(item) for item in node]
        if isinstance(node, dict):
            return {key: walk(value) for key, value in node.items()}
        return node

    return json.dumps(walk(parsed), ensure_ascii=False)


class StreamRehydrator:
    """Feed streamed text pieces in order; get back what can be shown now.

    `feed(text) -> str` returns the restored text up to any trailing partial placeholder;
    `flush() -> str` returns what is held back (call it before the chunk that carries
    `finish_reason`, and at the end). Holding back is bounded by `max_hold_chars`, the
    longest placeholder of the request: a longer `<…` run cannot be one, so it is emitted.
    """

    __slots__ = ("_mapping", "_pending", "_escape", "max_hold_chars")

    def __init__(self, mapping: Pseudonymizer, escape: Callable[[str], str] | None = None) -> None:
        self._mapping = mapping
        self._pending = ""
        self._escape = escape  # json_string_escape for streamed tool-call arguments
        self.max_hold_chars = mapping.longest_token_chars

    @property
    def held_chars(self) -> int:
        return len(self._pending)

    def feed(self, text: str) -> str:
        if not text:
            return ""
        if self.max_hold_chars == 0:
            return text  # nothing was pseudonymized: nothing to restore, nothing to hold
        buffer = self._pending + text
        hold_from = len(buffer)
        tail = _PARTIAL_TAIL.search(buffer)
        if tail is not None and len(buffer) - tail.start() < self.max_hold_chars:
            # Strictly shorter than the longest token: a complete token ends with '>' and is
            # never a partial tail, so a tail as long as a token cannot become one.
            hold_from = tail.start()
        ready, self._pending = buffer[:hold_from], buffer[hold_from:]
        return rehydrate_text(ready, self._mapping, self._escape)

    def flush(self) -> str:
        rest, self._pending = self._pending, ""
        return rehydrate_text(rest, self._mapping, self._escape)
