"""Google Gemini adapter: generateContent and streamGenerateContent?alt=sse (v1beta),
batchEmbedContents for embeddings.

Gemini has equivalents for almost every OpenAI parameter: n → candidateCount, seed,
logprobs/top_logprobs → responseLogprobs/logprobs, response_format → responseMimeType +
responseJsonSchema, penalties. Not available: logit_bias (400 unsupported_parameter).
Embeddings: Gemini reports no token usage, so embedding usage is estimated.
"""

from __future__ import annotations

import mimetypes
from typing import Any
from urllib.parse import quote

import orjson

from gateway.providers.base import (
    USAGE_SOURCE_ESTIMATED,
    ChatResult,
    ChatStream,
    UpstreamError,
    Usage,
    invalid_request,
)
from gateway.providers.common import (
    TextEmbeddingAdapter,
    TranslatingStream,
    as_int,
    content_text,
    function_tools,
    named_function,
    native_params,
    new_completion_id,
    new_tool_call_id,
    one_per_input,
    open_sse,
    openai_tool_call,
    post_json,
    reject_unsupported,
    stop_list,
    tool_parameters,
    translate,
    truncated,
    unix_now,
    unsupported,
)
from gateway.providers.errors import error_from_status, malformed
from gateway.providers.parts import Spelling, alternating_turns
from gateway.providers.sse import iter_sse
from gateway.providers.tokens import estimate_embedding_tokens

FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "MALFORMED_FUNCTION_CALL": "stop",
    "LANGUAGE": "stop",
    "OTHER": "stop",
}

# OpenAI sampling parameter → its generationConfig name.
SAMPLING_PARAMS = {
    "temperature": "temperature",
    "top_p": "topP",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}

# Gemini's error `status` → HTTP status (for errors arriving inside a stream).
STATUS_CODES = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


def _remote_image(provider: str, url: str) -> dict[str, Any]:
    guessed, _ = mimetypes.guess_type(url)
    if not guessed:
        raise unsupported(provider, "messages", "a remote image URL needs a file extension")
    return {"fileData": {"fileUri": url, "mimeType": guessed}}


def _response_object(text: str) -> dict[str, Any]:
    # functionResponse.response must be an object; wrap anything else.
    try:
        parsed = orjson.loads(text) if text else {}
    except orjson.JSONDecodeError:
        return {"result": text}
    return parsed if isinstance(parsed, dict) else {"result": parsed}


def _function_call(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    return {"functionCall": {"id": call_id, "name": name, "args": arguments}}


def _function_response(
    provider: str, call_id: Any, name: str | None, content: Any
) -> dict[str, Any]:
    # A functionResponse names its function: the tool message must answer an earlier call.
    if name is None:
        raise invalid_request(
            provider,
            "invalid_tool_result",
            "a tool message answers no earlier assistant tool call",
            param="messages",
        )
    response = _response_object(content_text(content))
    return {"functionResponse": {"id": str(call_id), "name": name, "response": response}}


SPELLING = Spelling(
    text=lambda text: {"text": text},
    inline_image=lambda _, media_type, data: {"inlineData": {"mimeType": media_type, "data": data}},
    remote_image=_remote_image,
    document=lambda document: {
        "inlineData": {"mimeType": document.media_type, "data": document.data_base64}
    },
    tool_call=_function_call,
    tool_result=_function_response,
)


def to_gemini(body: dict[str, Any], provider: str = "google") -> dict[str, Any]:
    reject_unsupported(provider, body, ("logit_bias",))
    system_parts, contents = alternating_turns(
        provider, body.get("messages"), SPELLING, assistant_role="model", key="parts"
    )

    native: dict[str, Any] = {"contents": contents}
    if system_parts:
        native["systemInstruction"] = {
            "parts": [{"text": "\n\n".join(p for p in system_parts if p)}]
        }
    config = native_params(body, SAMPLING_PARAMS, max_tokens_as="maxOutputTokens")
    if body.get("n") not in (None, 1):
        config["candidateCount"] = body["n"]
    stops = stop_list(body)
    if stops:
        config["stopSequences"] = stops
    if body.get("logprobs"):
        config["responseLogprobs"] = True
        if body.get("top_logprobs") is not None:
            config["logprobs"] = body["top_logprobs"]
    response_format = body.get("response_format")
    if isinstance(response_format, dict):
        kind = response_format.get("type")
        if kind == "json_object":
            config["responseMimeType"] = "application/json"
        elif kind == "json_schema":
            config["responseMimeType"] = "application/json"
            schema = (response_format.get("json_schema") or {}).get("schema")
            if schema is not None:
                config["responseJsonSchema"] = schema
    if config:
        native["generationConfig"] = config
    tools = function_tools(provider, body)
    if tools:
        native["tools"] = [
            {
                "functionDeclarations": [
                    {
                        "name": tool["name"],
                        "description": tool.get("description") or "",
                        "parametersJsonSchema": tool_parameters(tool),
                    }
                    for tool in tools
                ]
            }
        ]
        choice = body.get("tool_choice")
        calling: dict[str, Any] | None = None
        if choice == "auto":
            calling = {"mode": "AUTO"}
        elif choice == "required":
            calling = {"mode": "ANY"}
        elif choice == "none":
            calling = {"mode": "NONE"}
        elif isinstance(choice, dict):
            calling = {
                "mode": "ANY",
                "allowedFunctionNames": [named_function(choice)],
            }
        if calling is not None:
            native["toolConfig"] = {"functionCallingConfig": calling}
    return native


def usage_from_gemini(raw: Any) -> Usage | None:
    if not isinstance(raw, dict) or "promptTokenCount" not in raw:
        return None
    return Usage(
        prompt_tokens=as_int(raw.get("promptTokenCount"))
        + as_int(raw.get("toolUsePromptTokenCount")),
        # Thinking tokens are billed as output.
        completion_tokens=as_int(raw.get("candidatesTokenCount"))
        + as_int(raw.get("thoughtsTokenCount")),
        cached_tokens=as_int(raw.get("cachedContentTokenCount")),
    )


def _logprobs(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        return None
    chosen = raw.get("chosenCandidates") or []
    top = raw.get("topCandidates") or []
    content = []
    for position, candidate in enumerate(chosen):
        alternatives = top[position].get("candidates", []) if position < len(top) else []
        content.append(
            {
                "token": candidate.get("token", ""),
                "logprob": candidate.get("logProbability", 0.0),
                "bytes": None,
                "top_logprobs": [
                    {
                        "token": alt.get("token", ""),
                        "logprob": alt.get("logProbability", 0.0),
                        "bytes": None,
                    }
                    for alt in alternatives
                ],
            }
        )
    return {"content": content, "refusal": None}


def _candidate_output(candidate: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in (candidate.get("content") or {}).get("parts") or []:
        if part.get("thought"):
            continue  # thinking summaries are not part of the answer
        if "text" in part:
            texts.append(str(part["text"]))
        elif "functionCall" in part:
            call = part["functionCall"]
            call_id = call.get("id") or new_tool_call_id()
            calls.append(openai_tool_call(call_id, call.get("name"), call.get("args")))
    return "".join(texts), calls


def _finish(candidate: dict[str, Any], has_calls: bool) -> str:
    reason = FINISH_REASONS.get(str(candidate.get("finishReason")), "stop")
    return "tool_calls" if has_calls and reason == "stop" else reason


def from_gemini(data: Any, model: str, provider: str = "google") -> tuple[dict[str, Any], Usage]:
    if not isinstance(data, dict):
        raise malformed(provider, "response is not an object")
    usage = usage_from_gemini(data.get("usageMetadata"))
    if usage is None:
        raise malformed(provider, "response without usageMetadata")
    candidates = data.get("candidates")
    choices = []
    if not candidates:
        # The prompt itself was blocked (promptFeedback.blockReason): no candidates at all.
        if (data.get("promptFeedback") or {}).get("blockReason"):
            choices.append(
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "", "refusal": None},
                    "finish_reason": "content_filter",
                    "logprobs": None,
                }
            )
        else:
            raise malformed(provider, "response without candidates")
    for position, candidate in enumerate(candidates or []):
        text, calls = _candidate_output(candidate)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": text if text or not calls else None,
            "refusal": None,
        }
        if calls:
            message["tool_calls"] = calls
        choices.append(
            {
                "index": as_int(candidate.get("index", position)),
                "message": message,
                "finish_reason": _finish(candidate, bool(calls)),
                "logprobs": _logprobs(candidate.get("logprobsResult")),
            }
        )
    body = {
        "id": new_completion_id(),
        "object": "chat.completion",
        "created": unix_now(),
        "model": model,
        "choices": choices,
        "usage": usage.as_openai(),
    }
    return body, usage


def error_from_gemini_payload(provider: str, payload: Any) -> UpstreamError:
    error = payload.get("error") if isinstance(payload, dict) else None
    status = 502
    if isinstance(error, dict):
        if isinstance(error.get("code"), int):
            status = error["code"]
        elif str(error.get("status")) in STATUS_CODES:
            status = STATUS_CODES[str(error.get("status"))]
    return error_from_status(provider, status, {}, payload)


class GoogleAdapter(TextEmbeddingAdapter):
    provider = "google"
    supports_embeddings = True

    def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.endpoint.api_key:
            headers["x-goog-api-key"] = self.endpoint.api_key
        return headers

    def url(self, model: str, method: str) -> str:
        base = self.endpoint.base_url.rstrip("/")
        if not base.endswith("/v1beta") and not base.endswith("/v1"):
            base += "/v1beta"
        return f"{base}/models/{quote(model, safe='-._')}:{method}"

    def native_body(self, body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
        # The model travels in the URL, not the body.
        return translate(self.provider, to_gemini, body, self.provider)

    async def chat(self, body: dict[str, Any], upstream_model: str) -> ChatResult:
        native = self.native_body(body, upstream_model)
        data = await post_json(
            self.client,
            self.provider,
            self.url(upstream_model, "generateContent"),
            native,
            self.headers(),
        )
        openai_body, usage = from_gemini(data, body.get("model") or upstream_model, self.provider)
        return ChatResult(body=openai_body, usage=usage)

    async def chat_stream(self, body: dict[str, Any], upstream_model: str) -> ChatStream:
        native = self.native_body(body, upstream_model)
        response = await open_sse(
            self,
            self.url(upstream_model, "streamGenerateContent") + "?alt=sse",
            self.headers(),
            native,
        )
        return GeminiChatStream(self.provider, response, body.get("model") or upstream_model)  # type: ignore[return-value]

    async def embed_texts(
        self, inputs: list[str], body: dict[str, Any], upstream_model: str
    ) -> tuple[list[list[float]], Usage]:
        model_name = f"models/{upstream_model}"
        requests = []
        for text in inputs:
            request: dict[str, Any] = {"model": model_name, "content": {"parts": [{"text": text}]}}
            if body.get("dimensions") is not None:
                request["outputDimensionality"] = body["dimensions"]
            requests.append(request)
        data = await post_json(
            self.client,
            self.provider,
            self.url(upstream_model, "batchEmbedContents"),
            {"requests": requests},
            self.headers(),
        )
        embeddings = data.get("embeddings") if isinstance(data, dict) else None
        items = one_per_input(self.provider, embeddings, inputs)
        vectors = [list(item.get("values") or []) for item in items]
        # Gemini reports no token usage for embeddings: estimate, and say so.
        usage = Usage(
            prompt_tokens=estimate_embedding_tokens(inputs),
            completion_tokens=0,
            source=USAGE_SOURCE_ESTIMATED,
        )
        return vectors, usage


class GeminiChatStream(TranslatingStream, ChatStream):
    async def _translate(self) -> Any:
        started: set[int] = set()
        tool_counts: dict[int, int] = {}
        finished: dict[int, str] = {}
        async for event in iter_sse(self.response):
            if not event.data:
                continue
            payload = orjson.loads(event.data)
            if not isinstance(payload, dict):
                raise malformed(self.provider, "stream chunk is not an object")
            if "error" in payload:
                raise error_from_gemini_payload(self.provider, payload)
            candidates = payload.get("candidates") or []
            running = payload.get("usageMetadata")
            if isinstance(running, dict) and running.get("promptTokenCount") is not None:
                self.prompt_tokens_reported = as_int(running["promptTokenCount"])
            # Intermediate chunks carry a running usageMetadata (prompt only); the final count
            # is the one on the chunk that finishes. Taking a partial one would under-charge.
            if any(c.get("finishReason") for c in candidates) or not candidates:
                usage = usage_from_gemini(payload.get("usageMetadata"))
                if usage is not None:
                    self.usage = usage
            if not candidates and (payload.get("promptFeedback") or {}).get("blockReason"):
                finished[0] = "content_filter"
                yield self.chunk({"role": "assistant", "content": ""})
            for position, candidate in enumerate(candidates):
                index = as_int(candidate.get("index", position))
                delta: dict[str, Any] = {}
                if index not in started:
                    started.add(index)
                    delta["role"] = "assistant"
                text, calls = _candidate_output(candidate)
                if text:
                    delta["content"] = text
                if calls:
                    # Gemini sends a function call whole, in one chunk: emit it as one delta.
                    first = tool_counts.get(index, 0)
                    delta["tool_calls"] = [
                        {"index": first + offset, **call} for offset, call in enumerate(calls)
                    ]
                    tool_counts[index] = first + len(calls)
                if delta:
                    item = self.chunk(delta)
                    item["choices"][0]["index"] = index
                    logprobs = _logprobs(candidate.get("logprobsResult"))
                    if logprobs is not None:
                        item["choices"][0]["logprobs"] = logprobs
                    yield item
                if candidate.get("finishReason"):
                    finished[index] = _finish(candidate, tool_counts.get(index, 0) > 0)
        if not finished:
            self.usage = None  # a cut-off stream's partial usage is not the final count
            raise truncated(self.provider, "a finishReason")
        for index, reason in sorted(finished.items()):
            item = self.chunk({}, reason)
            item["choices"][0]["index"] = index
            yield item
        self.finish_reason = finished[min(finished)]
