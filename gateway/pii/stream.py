"""PII on the answer side. The stream filter on OpenAI chat chunks (the output firewall,
then rehydration, per choice and per streamed tool call; gateway/pii/streaming.PiiStreamFilter
does the text).

The stream step of the lifecycle (gateway/lifecycle/stream.py) puts every upstream chunk
through `PiiChunkFilter.process` and calls `finish` once the upstream has ended; a whole
(non-streamed) answer is checked by `answer_violation` (gateway/lifecycle/chat.py)."""

from __future__ import annotations

import time
from typing import Any

from domain.errors import GuardrailViolation
from gateway.pii.engine import PiiScreener
from gateway.pii.firewall import FIREWALL_SCANNER
from gateway.pii.policy import PiiPolicy
from gateway.pii.pseudonymize import Pseudonymizer
from gateway.pii.rehydrate import json_string_escape
from gateway.pii.streaming import PiiStreamFilter


class PiiChunkFilter:
    """Applies the PII stream filter (output firewall, then rehydration) to OpenAI chunks:
    one filter per choice index for content and one per tool call for its streamed
    arguments (JSON text). Text held back by a filter is sent
    before the chunk that carries `finish_reason` (or at the end); a chunk left with
    nothing to say is dropped. A firewall hit raises GuardrailViolation: the route then
    records the failure, sends the SSE error frame and closes the upstream call."""

    def __init__(
        self, screener: PiiScreener, policy: PiiPolicy, mapping: Pseudonymizer, language: str
    ) -> None:
        self._screener = screener
        self._policy = policy
        self._mapping = mapping
        self._language = language
        self._filters: dict[int, PiiStreamFilter] = {}
        self._tool_filters: dict[tuple[int, int], PiiStreamFilter] = {}

    @classmethod
    def wanted(
        cls,
        screener: PiiScreener,
        policy: PiiPolicy | None,
        mapping: Pseudonymizer | None,
        language: str,
    ) -> PiiChunkFilter | None:
        """A filter when the request's policy restores values or blocks types in answers."""
        if policy is None or mapping is None:
            return None
        if not (policy.wants_rehydration or policy.output_blocked_entity_types):
            return None
        return cls(screener, policy, mapping, language)

    def _filter(self, index: int) -> PiiStreamFilter:
        stream_filter = self._filters.get(index)
        if stream_filter is None:
            stream_filter = self._filters[index] = PiiStreamFilter(
                self._screener, self._policy, self._mapping, language=self._language
            )
        return stream_filter

    async def process(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices:
            return [chunk]
        keep = False
        for position, choice in enumerate(choices):
            if not isinstance(choice, dict):
                keep = True
                continue
            index = choice.get("index", position)
            index = index if isinstance(index, int) else position
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, dict) else None
            text = ""
            if isinstance(content, str) and content:
                step = await self._filter(index).feed(content)
                if step.violation is not None:
                    raise step.violation.as_error()
                text = step.text
            if choice.get("finish_reason"):
                text += await _flushed(self._filter(index))
            if isinstance(delta, dict):
                keep = await self._filter_tool_calls(index, delta, choice) or keep
            if isinstance(content, str) and isinstance(delta, dict):
                delta["content"] = text
            elif text and isinstance(delta, dict):
                delta["content"] = text
            elif text:
                choice["delta"] = {"content": text}
            other_delta = isinstance(delta, dict) and any(
                key != "content" and value is not None for key, value in delta.items()
            )
            if text or other_delta or choice.get("finish_reason") or content == "":
                keep = True
        return [chunk] if keep or chunk.get("usage") else []

    def _tool_filter(self, key: tuple[int, int]) -> PiiStreamFilter:
        stream_filter = self._tool_filters.get(key)
        if stream_filter is None:
            stream_filter = self._tool_filters[key] = PiiStreamFilter(
                self._screener,
                self._policy,
                self._mapping,
                language=self._language,
                escape=json_string_escape,
            )
        return stream_filter

    async def _filter_tool_calls(
        self, index: int, delta: dict[str, Any], choice: dict[str, Any]
    ) -> bool:
        """Streamed tool-call arguments are JSON text: each call gets its own filter — the
        firewall on the raw arguments, then placeholders restored with JSON-escaped values,
        a split placeholder held back like content. Held text is released on the next delta
        of the same call, or at the finish chunk."""
        calls = delta.get("tool_calls")
        changed = isinstance(calls, list)
        for position, call in enumerate(calls if isinstance(calls, list) else ()):
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("arguments"), str):
                continue
            call_index = call.get("index", position)
            key = (index, call_index if isinstance(call_index, int) else position)
            step = await self._tool_filter(key).feed(function["arguments"])
            if step.violation is not None:
                raise step.violation.as_error()
            function["arguments"] = step.text
        if choice.get("finish_reason"):
            # Every call of this choice releases what it still holds, in one delta.
            tails = []
            for (choice_index, call_index), stream_filter in self._tool_filters.items():
                if choice_index != index:
                    continue
                tail = await _flushed(stream_filter)
                if tail:
                    tails.append({"index": call_index, "function": {"arguments": tail}})
            if tails:
                existing = delta.get("tool_calls")
                delta["tool_calls"] = [*(existing if isinstance(existing, list) else ()), *tails]
                changed = True
        return changed

    async def finish(self, last_chunk: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The upstream ended without a finish chunk for some choice: release what is held."""
        out: list[dict[str, Any]] = []
        base = last_chunk or {}
        for (choice_index, call_index), tool_filter in self._tool_filters.items():
            tail = await _flushed(tool_filter)
            if tail:
                tool_calls = [{"index": call_index, "function": {"arguments": tail}}]
                out.append(_tail_chunk(base, choice_index, {"tool_calls": tool_calls}))
        for index, stream_filter in self._filters.items():
            text = await _flushed(stream_filter)
            if text:
                out.append(_tail_chunk(base, index, {"content": text}))
        return out


async def _flushed(stream_filter: PiiStreamFilter) -> str:
    step = await stream_filter.flush()
    if step.violation is not None:
        raise step.violation.as_error()
    return step.text


def _tail_chunk(base: dict[str, Any], index: int, delta: dict[str, Any]) -> dict[str, Any]:
    """A chunk of its own for text released after the upstream's last chunk."""
    return {
        "id": base.get("id"),
        "object": "chat.completion.chunk",
        "created": base.get("created", int(time.time())),
        "model": base.get("model"),
        "choices": [{"index": index, "delta": delta, "finish_reason": None}],
    }


def answer_violation(
    screener: PiiScreener, policy: PiiPolicy, language: str, text: str
) -> GuardrailViolation | None:
    """Output screening of a whole (non-streamed) answer for the types the policy blocks."""
    if not policy.output_blocked_entity_types or not text:
        return None
    findings = screener.analyze(
        text, language, policy.output_blocked_entity_types, policy.score_threshold
    )
    found = tuple(sorted({f.entity_type for f in findings}))
    if not found:
        return None
    return GuardrailViolation(
        "the answer contained personal data this policy blocks: " + ", ".join(found),
        scanner=FIREWALL_SCANNER,
        entity_types=found,
    )
