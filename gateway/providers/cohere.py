"""Cohere v2 adapter: POST /v2/chat (SSE stream of typed events) and /v2/embed.

Not available on Cohere v2 chat, refused with 400 unsupported_parameter: n>1, top_logprobs,
logit_bias. Passed through: seed, logprobs (token-level, mapped to OpenAI's shape),
response_format (json_object / json_schema), penalties, stop.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.providers.base import (
    ChatResult,
    ChatStream,
    UpstreamError,
    Usage,
)
from gateway.providers.common import (
    TextEmbeddingAdapter,
    TranslatingStream,
    as_int,
    completion_body,
    content_text,
    function_tools,
    native_params,
    new_completion_id,
    one_per_input,
    open_sse,
    post_json,
    reject_unsupported,
    stop_list,
    tool_parameters,
    translate,
    truncated,
    unsupported,
)
from gateway.providers.errors import error_from_status, malformed
from gateway.providers.parts import Spelling, content_blocks
from gateway.providers.sse import iter_sse

FINISH_REASONS = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
}
# OpenAI sampling parameter → Cohere's name for it.
SAMPLING_PARAMS = {
    "temperature": "temperature",
    "top_p": "p",
    "seed": "seed",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
}
# Finish reasons that mean the generation failed: an error to the client, not a finish.
FAILED_FINISH_STATUS = {"ERROR": 502, "TIMEOUT": 504}
DEFAULT_EMBED_INPUT_TYPE = "search_document"


def _image(url: Any) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


SPELLING = Spelling(
    text=lambda text: {"type": "text", "text": text},
    image_as_is=_image,  # Cohere v2 takes OpenAI's image_url part unchanged
)


def _content(provider: str, content: Any) -> Any:
    if content is None or isinstance(content, str):
        return content or ""
    return content_blocks(provider, content, SPELLING)


def to_cohere(
    body: dict[str, Any], upstream_model: str, provider: str = "cohere"
) -> dict[str, Any]:
    reject_unsupported(provider, body, ("n", "top_logprobs", "logit_bias"))
    messages: list[dict[str, Any]] = []
    for message in body.get("messages") or []:
        role = message.get("role")
        if role in ("system", "developer"):
            messages.append({"role": "system", "content": content_text(message.get("content"))})
        elif role == "user":
            messages.append({"role": "user", "content": _content(provider, message.get("content"))})
        elif role == "assistant":
            native: dict[str, Any] = {"role": "assistant"}
            text = content_text(message.get("content"))
            if text:
                native["content"] = text
            calls = message.get("tool_calls")
            if calls:
                native["tool_calls"] = [
                    {
                        "id": call.get("id"),
                        "type": "function",
                        "function": {
                            "name": (call.get("function") or {}).get("name"),
                            "arguments": (call.get("function") or {}).get("arguments") or "{}",
                        },
                    }
                    for call in calls
                ]
            messages.append(native)
        elif role == "tool":
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": message.get("tool_call_id"),
                    "content": content_text(message.get("content")),
                }
            )
        else:
            raise unsupported(provider, "messages", f"role {str(role)[:20]!r}")
    native_body: dict[str, Any] = {"model": upstream_model, "messages": messages}
    native_body.update(native_params(body, SAMPLING_PARAMS, max_tokens_as="max_tokens"))
    if body.get("logprobs"):
        native_body["logprobs"] = True
    stops = stop_list(body)
    if stops:
        native_body["stop_sequences"] = stops
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in (
        "json_object",
        "json_schema",
    ):
        cohere_format: dict[str, Any] = {"type": "json_object"}
        schema = (response_format.get("json_schema") or {}).get("schema")
        if schema is not None:
            cohere_format["json_schema"] = schema
        native_body["response_format"] = cohere_format
    tools = function_tools(provider, body)
    if tools:
        native_body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool["name"],
                    "description": tool.get("description") or "",
                    "parameters": tool_parameters(tool),
                },
            }
            for tool in tools
        ]
        choice = body.get("tool_choice")
        if choice == "required":
            native_body["tool_choice"] = "REQUIRED"
        elif choice == "none":
            native_body["tool_choice"] = "NONE"
        elif isinstance(choice, dict):
            raise unsupported(
                provider, "tool_choice", "Cohere cannot force one named tool; use 'required'"
            )
    return native_body


def usage_from_cohere(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    # billed_units is what Cohere charges; tokens (raw counts) only as a fallback.
    billed = raw.get("billed_units") or raw.get("tokens")
    if not isinstance(billed, dict):
        return None
    return Usage(
        prompt_tokens=as_int(billed.get("input_tokens")),
        completion_tokens=as_int(billed.get("output_tokens")),
        cached_tokens=as_int(raw.get("cached_tokens")),
    )


def _logprobs(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, list):
        return None
    content = []
    for item in raw:
        values = item.get("logprobs") or []
        token_text = item.get("text", "")
        for position, value in enumerate(values):
            content.append(
                {
                    "token": token_text
                    if len(values) == 1
                    else (token_text if position == 0 else ""),
                    "logprob": value,
                    "bytes": None,
                    "top_logprobs": [],
                }
            )
    return {"content": content, "refusal": None}


def from_cohere(data: Any, model: str, provider: str = "cohere") -> tuple[dict[str, Any], Usage]:
    if not isinstance(data, dict) or not isinstance(data.get("message"), dict):
        raise malformed(provider, "response without message")
    usage = usage_from_cohere(data.get("usage"))
    if usage is None:
        raise malformed(provider, "response without usage")
    finish_raw = str(data.get("finish_reason"))
    if finish_raw in FAILED_FINISH_STATUS:
        raise error_from_status(
            provider, FAILED_FINISH_STATUS[finish_raw], {}, {"message": "generation failed"}
        )
    message = data["message"]
    texts = [
        str(part.get("text") or "")
        for part in message.get("content") or []
        if part.get("type") == "text"
    ]
    calls = [
        {
            "id": call.get("id"),
            "type": "function",
            "function": {
                "name": (call.get("function") or {}).get("name"),
                "arguments": (call.get("function") or {}).get("arguments") or "{}",
            },
        }
        for call in message.get("tool_calls") or []
    ]
    body = completion_body(
        completion_id=new_completion_id(),
        model=model,
        texts=texts,
        tool_calls=calls,
        finish_reason=FINISH_REASONS.get(finish_raw, "stop"),
        usage=usage,
    )
    body["choices"][0]["logprobs"] = _logprobs(data.get("logprobs"))
    return body, usage


class CohereAdapter(TextEmbeddingAdapter):
    provider = "cohere"
    supports_embeddings = True

    def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if self.endpoint.api_key:
            headers["authorization"] = f"Bearer {self.endpoint.api_key}"
        return headers

    def url(self, path: str) -> str:
        base = self.endpoint.base_url.rstrip("/")
        if base.endswith("/v2"):
            base = base[: -len("/v2")]
        return base + path

    def native_body(self, body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
        return translate(self.provider, to_cohere, body, upstream_model, self.provider)

    async def chat(self, body: dict[str, Any], upstream_model: str) -> ChatResult:
        native = self.native_body(body, upstream_model)
        data = await post_json(
            self.client, self.provider, self.url("/v2/chat"), native, self.headers()
        )
        openai_body, usage = from_cohere(data, body.get("model") or upstream_model, self.provider)
        return ChatResult(body=openai_body, usage=usage)

    async def chat_stream(self, body: dict[str, Any], upstream_model: str) -> ChatStream:
        native = self.native_body(body, upstream_model)
        native["stream"] = True
        headers = {**self.headers(), "accept": "text/event-stream"}
        response = await open_sse(self, self.url("/v2/chat"), headers, native)
        return CohereChatStream(self.provider, response, body.get("model") or upstream_model)  # type: ignore[return-value]

    async def embed_texts(
        self, inputs: list[str], body: dict[str, Any], upstream_model: str
    ) -> tuple[list[list[float]], Usage]:
        payload: dict[str, Any] = {
            "model": upstream_model,
            "texts": inputs,
            # Cohere v3+ models require an input_type; documents are the common case for a
            # gateway's embeddings endpoint. A client may choose with the body field input_type.
            "input_type": body.get("input_type") or DEFAULT_EMBED_INPUT_TYPE,
            "embedding_types": ["float"],
        }
        if body.get("dimensions") is not None:
            payload["output_dimension"] = body["dimensions"]
        data = await post_json(
            self.client, self.provider, self.url("/v2/embed"), payload, self.headers()
        )
        vectors = ((data.get("embeddings") or {}).get("float")) if isinstance(data, dict) else None
        vectors = one_per_input(self.provider, vectors, inputs)
        billed = ((data.get("meta") or {}).get("billed_units")) or {}
        usage = Usage(prompt_tokens=as_int(billed.get("input_tokens")), completion_tokens=0)
        return vectors, usage


class CohereChatStream(TranslatingStream, ChatStream):
    async def _translate(self) -> Any:
        tool_index_of_block: dict[int, int] = {}
        ended = False
        async for event in iter_sse(self.response):
            if not event.data or event.data == "[DONE]":
                continue
            payload = orjson.loads(event.data)
            kind = payload.get("type") or event.event
            if kind is None and "message" in payload:
                raise error_from_status(self.provider, 502, {}, payload)
            if kind == "message-start":
                yield self.chunk({"role": "assistant", "content": ""})
            elif kind == "content-delta":
                text = payload["delta"]["message"]["content"].get("text", "")
                item = self.chunk({"content": text})
                logprobs = _logprobs([payload["logprobs"]] if payload.get("logprobs") else None)
                if logprobs is not None:
                    item["choices"][0]["logprobs"] = logprobs
                yield item
            elif kind == "tool-call-start":
                call = payload["delta"]["message"]["tool_calls"]
                index = len(tool_index_of_block)
                tool_index_of_block[as_int(payload.get("index"))] = index
                function = call.get("function") or {}
                yield self.tool_call_start(
                    index, call.get("id"), function.get("name"), function.get("arguments") or ""
                )
            elif kind == "tool-call-delta":
                index = tool_index_of_block[as_int(payload.get("index"))]
                arguments = payload["delta"]["message"]["tool_calls"]["function"].get(
                    "arguments", ""
                )
                yield self.tool_call_arguments(index, arguments)
            elif kind == "message-end":
                delta = payload.get("delta") or {}
                finish_raw = str(delta.get("finish_reason"))
                if finish_raw in FAILED_FINISH_STATUS:
                    raise error_from_status(
                        self.provider,
                        FAILED_FINISH_STATUS[finish_raw],
                        {},
                        {"message": str(delta.get("error") or "generation failed")},
                    )
                self.finish_reason = FINISH_REASONS.get(finish_raw, "stop")
                self.usage = usage_from_cohere(delta.get("usage"))
                ended = True
                break
            elif kind == "error":
                raise error_from_status(self.provider, 502, {}, payload)
        if not ended:
            raise truncated(self.provider, "message-end")
        yield self.chunk({}, self.finish_reason)


__all__ = ["CohereAdapter", "UpstreamError"]
