"""Anthropic Messages API adapter (POST /v1/messages, SSE with named events).

Not available on Anthropic, refused with 400 unsupported_parameter: n>1, logprobs,
top_logprobs, seed, frequency_penalty, presence_penalty, logit_bias, response_format
json_object/json_schema (the Messages API has no JSON mode at this API version).
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.providers.base import (
    ChatResult,
    ChatStream,
    ProviderAdapter,
    UpstreamError,
    Usage,
)
from gateway.providers.common import (
    TranslatingStream,
    as_int,
    completion_body,
    content_text,
    function_tools,
    max_output_tokens,
    named_function,
    native_params,
    new_completion_id,
    open_sse,
    openai_tool_call,
    post_json,
    reject_json_mode,
    reject_unsupported,
    stop_list,
    tool_parameters,
    translate,
    truncated,
    usage_beside_cache,
)
from gateway.providers.documents import DocumentPart
from gateway.providers.errors import error_from_status, malformed
from gateway.providers.parts import Spelling, alternating_turns
from gateway.providers.sse import iter_sse

ANTHROPIC_VERSION = "2023-06-01"
# Anthropic requires max_tokens; OpenAI clients often omit it. 4096 is accepted by every
# current Claude model and is what the gateway reserves budget for.
DEFAULT_MAX_TOKENS = 4096
UNSUPPORTED_PARAMS = (
    "n",
    "logprobs",
    "top_logprobs",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
)

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Anthropic error `type` → the HTTP status it comes with (used for mid-stream error events).
ERROR_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def _document(document: DocumentPart) -> dict[str, Any]:
    return {
        "type": "document",
        "source": {
            "type": "base64",
            "media_type": document.media_type,
            "data": document.data_base64,
        },
        "title": document.filename,
    }


def _tool_use(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": arguments}


def _tool_result(provider: str, call_id: Any, name: str | None, content: Any) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": call_id, "content": content_text(content)}


SPELLING = Spelling(
    text=lambda text: {"type": "text", "text": text},
    inline_image=lambda _, media_type, data: {
        "type": "image",
        "source": {"type": "base64", "media_type": media_type, "data": data},
    },
    remote_image=lambda _, url: {"type": "image", "source": {"type": "url", "url": url}},
    document=_document,
    tool_call=_tool_use,
    tool_result=_tool_result,
)


def to_anthropic(
    body: dict[str, Any], upstream_model: str, provider: str = "anthropic"
) -> dict[str, Any]:
    reject_unsupported(provider, body, UNSUPPORTED_PARAMS)
    reject_json_mode(provider, body, "no JSON mode on the Messages API")
    # The Messages API wants user/assistant alternation.
    system_parts, messages = alternating_turns(provider, body.get("messages"), SPELLING)

    native: dict[str, Any] = {
        "model": upstream_model,
        "messages": messages,
        "max_tokens": max_output_tokens(body) or DEFAULT_MAX_TOKENS,
    }
    if system_parts:
        native["system"] = "\n\n".join(part for part in system_parts if part)
    native.update(native_params(body, {"temperature": "temperature", "top_p": "top_p"}))
    stops = stop_list(body)
    if stops:
        native["stop_sequences"] = stops
    tools = function_tools(provider, body)
    if tools:
        native["tools"] = [
            {
                "name": tool["name"],
                "description": tool.get("description") or "",
                "input_schema": tool_parameters(tool),
            }
            for tool in tools
        ]
        choice = body.get("tool_choice")
        tool_choice: dict[str, Any] | None = None
        if choice == "auto" or choice is None:
            tool_choice = {"type": "auto"}
        elif choice == "required":
            tool_choice = {"type": "any"}
        elif choice == "none":
            tool_choice = {"type": "none"}
        elif isinstance(choice, dict):
            tool_choice = {"type": "tool", "name": named_function(choice)}
        if (
            tool_choice is not None
            and body.get("parallel_tool_calls") is False
            and tool_choice["type"] != "none"
        ):
            tool_choice["disable_parallel_tool_use"] = True
        if tool_choice is not None:
            native["tool_choice"] = tool_choice
    return native


def usage_from_anthropic(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    return usage_beside_cache(
        raw.get("input_tokens"),
        raw.get("output_tokens"),
        raw.get("cache_read_input_tokens"),
        raw.get("cache_creation_input_tokens"),
    )


def from_anthropic(
    data: Any, model: str, provider: str = "anthropic"
) -> tuple[dict[str, Any], Usage]:
    if not isinstance(data, dict) or not isinstance(data.get("content"), list):
        raise malformed(provider, "message without content")
    usage = usage_from_anthropic(data.get("usage"))
    if usage is None:
        raise malformed(provider, "message without usage")
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in data["content"]:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            texts.append(str(block.get("text") or ""))
        elif block.get("type") == "tool_use":
            tool_calls.append(
                openai_tool_call(block.get("id"), block.get("name"), block.get("input"))
            )
    finish = FINISH_REASONS.get(str(data.get("stop_reason")), "stop")
    body = completion_body(
        completion_id=new_completion_id(),
        model=model,
        texts=texts,
        tool_calls=tool_calls,
        finish_reason=finish,
        usage=usage,
    )
    return body, usage


def error_from_event(provider: str, payload: Any) -> UpstreamError:
    error = payload.get("error") if isinstance(payload, dict) else None
    error_type = error.get("type") if isinstance(error, dict) else None
    status = ERROR_TYPE_STATUS.get(str(error_type), 502)
    return error_from_status(provider, status, {}, payload)


class AnthropicAdapter(ProviderAdapter):
    provider = "anthropic"
    supports_embeddings = False  # Anthropic has no embeddings API

    def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
        if self.endpoint.api_key:
            headers["x-api-key"] = self.endpoint.api_key
        return headers

    def url(self) -> str:
        base = self.endpoint.base_url.rstrip("/")
        # Accept a base URL with or without the /v1 suffix (the SDK's default has none).
        return base + ("/messages" if base.endswith("/v1") else "/v1/messages")

    def native_body(self, body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
        return translate(self.provider, to_anthropic, body, upstream_model, self.provider)

    async def chat(self, body: dict[str, Any], upstream_model: str) -> ChatResult:
        native = self.native_body(body, upstream_model)
        data = await post_json(self.client, self.provider, self.url(), native, self.headers())
        openai_body, usage = from_anthropic(
            data, body.get("model") or upstream_model, self.provider
        )
        return ChatResult(body=openai_body, usage=usage)

    async def chat_stream(self, body: dict[str, Any], upstream_model: str) -> ChatStream:
        native = self.native_body(body, upstream_model)
        native["stream"] = True
        response = await open_sse(self, self.url(), self.headers(), native)
        return AnthropicChatStream(self.provider, response, body.get("model") or upstream_model)  # type: ignore[return-value]


class AnthropicChatStream(TranslatingStream, ChatStream):
    async def _translate(self) -> Any:
        usage_start: Usage | None = None
        output_tokens: int | None = None
        tool_index_of_block: dict[int, int] = {}
        stopped = False
        stop_reason: str | None = None
        async for event in iter_sse(self.response):
            if event.event is None or event.event == "ping" or not event.data:
                continue
            payload = orjson.loads(event.data)
            kind = event.event
            if kind == "error":
                raise error_from_event(self.provider, payload)
            if kind == "message_start":
                usage_start = usage_from_anthropic(payload["message"].get("usage"))
                if usage_start is not None:
                    self.prompt_tokens_reported = usage_start.prompt_tokens
                yield self.chunk({"role": "assistant", "content": ""})
            elif kind == "content_block_start":
                block = payload["content_block"]
                if block.get("type") == "tool_use":
                    index = len(tool_index_of_block)
                    tool_index_of_block[payload["index"]] = index
                    yield self.tool_call_start(index, block.get("id"), block.get("name"))
                elif block.get("type") == "text" and block.get("text"):
                    yield self.chunk({"content": block["text"]})
            elif kind == "content_block_delta":
                delta = payload["delta"]
                if delta.get("type") == "text_delta":
                    yield self.chunk({"content": delta.get("text", "")})
                elif delta.get("type") == "input_json_delta":
                    index = tool_index_of_block[payload["index"]]
                    yield self.tool_call_arguments(index, delta.get("partial_json", ""))
            elif kind == "message_delta":
                delta = payload.get("delta") or {}
                if delta.get("stop_reason"):
                    stop_reason = str(delta["stop_reason"])
                raw_usage = payload.get("usage") or {}
                if "output_tokens" in raw_usage:
                    output_tokens = as_int(raw_usage["output_tokens"])  # cumulative, take the last
                if raw_usage.get("input_tokens") is not None and usage_start is not None:
                    merged = usage_from_anthropic({**raw_usage})
                    if merged is not None and merged.prompt_tokens:
                        usage_start = Usage(merged.prompt_tokens, 0, merged.cached_tokens)
            elif kind == "message_stop":
                stopped = True
                break
        if not stopped:
            raise truncated(self.provider, "message_stop")
        self.finish_reason = FINISH_REASONS.get(stop_reason or "", "stop")
        yield self.chunk({}, self.finish_reason)
        if usage_start is not None and output_tokens is not None:
            self.usage = Usage(
                prompt_tokens=usage_start.prompt_tokens,
                completion_tokens=output_tokens,
                cached_tokens=usage_start.cached_tokens,
            )
