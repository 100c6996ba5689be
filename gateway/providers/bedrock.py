"""Amazon Bedrock adapter: Converse, ConverseStream (binary event-stream framing) and Titan
text embeddings (InvokeModel).

Auth: a Bedrock API key (LEDGERGATE_BEDROCK_API_KEY) is sent as a Bearer token; without one,
requests are signed with SigV4 using botocore's credential chain (AWS_ACCESS_KEY_ID, …,
profiles, instance roles) for LEDGERGATE_BEDROCK_REGION.

Not available on Converse, refused with 400 unsupported_parameter: n>1, logprobs,
top_logprobs, seed, frequency_penalty, presence_penalty, logit_bias, response_format
json_object/json_schema, and tool_choice "none" (Converse has no such choice).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from gateway import json_bytes
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
    named_function,
    native_params,
    new_completion_id,
    open_stream,
    openai_tool_call,
    reject_json_mode,
    reject_unsupported,
    stop_list,
    tool_parameters,
    translate,
    truncated,
    unsupported,
    usage_beside_cache,
)
from gateway.providers.errors import error_from_status, malformed
from gateway.providers.eventstream import EventStreamDecoder
from gateway.providers.parts import Spelling, alternating_turns

EVENTSTREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"
DEFAULT_REGION = "us-east-1"
# Titan embeds one text per call; bound the fan-out so one request cannot open 1,000 calls.
EMBEDDING_CONCURRENCY_MAX = 8
EMBEDDING_INPUTS_MAX = 256
UNSUPPORTED_PARAMS = (
    "n",
    "logprobs",
    "top_logprobs",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
)
IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}

# Bedrock error type (x-amzn-ErrorType header, or :exception-type in a stream) → the status
# the client sees. Bedrock returns quota errors and bad credentials with other statuses than
# the OpenAI contract uses, so the type decides, not the HTTP status.
ERROR_TYPE_STATUS = {
    "validationexception": 400,
    "unrecognizedclientexception": 401,
    "invalidsignatureexception": 401,
    "expiredtokenexception": 401,
    "accessdeniedexception": 403,
    "resourcenotfoundexception": 404,
    "throttlingexception": 429,
    "servicequotaexceededexception": 429,
    "modelnotreadyexception": 503,
    "modeltimeoutexception": 504,
    "modelerrorexception": 502,
    "modelstreamerrorexception": 502,
    "internalserverexception": 502,
    "serviceunavailableexception": 503,
}


def _document_name(filename: str) -> str:
    # Converse document names allow letters, digits, whitespace (single), hyphens, parentheses
    # and square brackets only; the file extension goes in `format`.
    stem = filename.rsplit(".", 1)[0] if "." in filename else filename
    cleaned = re.sub(r"[^A-Za-z0-9\-\(\)\[\] ]", "-", stem)
    cleaned = re.sub(r"\s+", " ", cleaned).strip()
    return (cleaned or "document")[:200]


def _inline_image(provider: str, media_type: str | None, data: str | None) -> dict[str, Any]:
    image_format = IMAGE_FORMATS.get(media_type or "")
    if image_format is None:
        raise unsupported(provider, "messages", f"image type {str(media_type)[:40]!r}")
    # Blobs travel base64-encoded in Converse's JSON protocol.
    return {"image": {"format": image_format, "source": {"bytes": data}}}


def _remote_image(provider: str, url: str) -> dict[str, Any]:
    raise unsupported(provider, "messages", "Bedrock takes inline images only (data: URLs)")


def _tool_use(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    return {"toolUse": {"toolUseId": call_id, "name": name, "input": arguments}}


def _tool_result(provider: str, call_id: Any, name: str | None, content: Any) -> dict[str, Any]:
    return {"toolResult": {"toolUseId": call_id, "content": [{"text": content_text(content)}]}}


SPELLING = Spelling(
    text=lambda text: {"text": text},
    inline_image=_inline_image,
    remote_image=_remote_image,
    document=lambda document: {
        "document": {
            "format": "pdf",
            "name": _document_name(document.filename),
            "source": {"bytes": document.data_base64},
        }
    },
    tool_call=_tool_use,
    tool_result=_tool_result,
)


def to_converse(body: dict[str, Any], provider: str = "bedrock") -> dict[str, Any]:
    reject_unsupported(provider, body, UNSUPPORTED_PARAMS)
    reject_json_mode(provider, body, "Converse has no JSON mode")
    system_texts, messages = alternating_turns(provider, body.get("messages"), SPELLING)
    system = [{"text": text} for text in system_texts if text]
    native: dict[str, Any] = {"messages": messages}
    if system:
        native["system"] = system
    inference = native_params(
        body, {"temperature": "temperature", "top_p": "topP"}, max_tokens_as="maxTokens"
    )
    stops = stop_list(body)
    if stops:
        inference["stopSequences"] = stops
    if inference:
        native["inferenceConfig"] = inference
    tools = function_tools(provider, body)
    if tools:
        choice = body.get("tool_choice")
        if choice == "none":
            raise unsupported(
                provider, "tool_choice", "Converse has no 'none' tool choice; omit the tools"
            )
        tool_config: dict[str, Any] = {
            "tools": [
                {
                    "toolSpec": {
                        "name": tool["name"],
                        "description": tool.get("description") or tool["name"],
                        "inputSchema": {"json": tool_parameters(tool)},
                    }
                }
                for tool in tools
            ]
        }
        if choice == "auto":
            tool_config["toolChoice"] = {"auto": {}}
        elif choice == "required":
            tool_config["toolChoice"] = {"any": {}}
        elif isinstance(choice, dict):
            tool_config["toolChoice"] = {"tool": {"name": named_function(choice)}}
        native["toolConfig"] = tool_config
    return native


def usage_from_converse(raw: Any) -> Usage | None:
    if not isinstance(raw, dict) or "inputTokens" not in raw:
        return None
    return usage_beside_cache(
        raw.get("inputTokens"),
        raw.get("outputTokens"),
        raw.get("cacheReadInputTokens"),
        raw.get("cacheWriteInputTokens"),
    )


def from_converse(data: Any, model: str, provider: str = "bedrock") -> tuple[dict[str, Any], Usage]:
    if not isinstance(data, dict):
        raise malformed(provider, "response is not an object")
    usage = usage_from_converse(data.get("usage"))
    if usage is None:
        raise malformed(provider, "response without usage")
    message = ((data.get("output") or {}).get("message")) or {}
    content = message.get("content")
    if not isinstance(content, list):
        raise malformed(provider, "response without output.message.content")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content:
        if "text" in block:
            texts.append(str(block["text"]))
        elif "toolUse" in block:
            use = block["toolUse"]
            calls.append(openai_tool_call(use.get("toolUseId"), use.get("name"), use.get("input")))
    body = completion_body(
        completion_id=new_completion_id(),
        model=model,
        texts=texts,
        tool_calls=calls,
        finish_reason=FINISH_REASONS.get(str(data.get("stopReason")), "stop"),
        usage=usage,
    )
    return body, usage


def _error_type(raw: str | None) -> str:
    # "ValidationException:http://internal.amazon.com/coral/…" → "validationexception"
    return (raw or "").split(":", 1)[0].strip().lower()


def bedrock_error(
    provider: str, status: int, headers: Any, payload: Any, text: str = ""
) -> UpstreamError:
    error_type = _error_type(headers.get("x-amzn-errortype") if headers else None)
    if not error_type and isinstance(payload, dict):
        error_type = _error_type(str(payload.get("__type") or ""))
    mapped = ERROR_TYPE_STATUS.get(error_type, status)
    error = error_from_status(provider, mapped, headers or {}, payload, text=text)
    if mapped == 403:
        error.hint = (
            "enable access to this model in the Bedrock console for this account and region"
        )
    return error


def bedrock_error_from_response(provider: str, response: httpx.Response) -> UpstreamError:
    try:
        payload: Any = response.json()
    except ValueError:
        payload = None
    return bedrock_error(
        provider, response.status_code, response.headers, payload, response.text[:500]
    )


class BedrockAdapter(TextEmbeddingAdapter):
    provider = "bedrock"
    supports_embeddings = True

    def __init__(self, endpoint: Any, client: httpx.AsyncClient, credentials: Any = None) -> None:
        super().__init__(endpoint, client)
        self.region = endpoint.region or DEFAULT_REGION
        self._credentials = credentials

    def base_url(self) -> str:
        if self.endpoint.base_url:
            return self.endpoint.base_url.rstrip("/")
        return f"https://bedrock-runtime.{self.region}.amazonaws.com"

    def url(self, model: str, action: str) -> str:
        # Model ids may be ARNs (":" and "/"): encode them whole as one path segment.
        return f"{self.base_url()}/model/{quote(model, safe='')}/{action}"

    def _signed_headers(self, url: str, content: bytes, accept: str) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": accept}
        if self.endpoint.api_key:
            headers["authorization"] = f"Bearer {self.endpoint.api_key}"
            return headers
        from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
        from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]

        credentials = self._credentials
        if credentials is None:
            import botocore.session  # type: ignore[import-untyped]

            credentials = botocore.session.get_session().get_credentials()
            if credentials is None:
                raise UpstreamError(
                    status=401,
                    code="upstream_authentication_failed",
                    message="bedrock: no credentials (set LEDGERGATE_BEDROCK_API_KEY or AWS credentials)",
                    error_type="authentication_error",
                    provider=self.provider,
                )
            self._credentials = credentials
        request = AWSRequest(method="POST", url=url, data=content, headers=headers)
        SigV4Auth(credentials.get_frozen_credentials(), "bedrock", self.region).add_auth(request)
        return {key: str(value) for key, value in request.headers.items()}

    async def _post_checked(self, url: str, payload: dict[str, Any]) -> Any:
        content = json_bytes.dumps(payload)
        headers = self._signed_headers(url, content, "application/json")
        from gateway.providers.errors import error_from_transport

        try:
            response = await self.client.post(url, content=content, headers=headers)
        except httpx.HTTPError as error:
            raise error_from_transport(self.provider, error) from None
        if response.status_code >= 400:
            raise bedrock_error_from_response(self.provider, response)
        if "json" not in response.headers.get("content-type", ""):
            raise malformed(self.provider, "expected JSON")
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise malformed(self.provider, "body is not JSON") from None

    def native_body(self, body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
        # The model travels in the URL, not the body.
        return translate(self.provider, to_converse, body, self.provider)

    async def chat(self, body: dict[str, Any], upstream_model: str) -> ChatResult:
        native = self.native_body(body, upstream_model)
        data = await self._post_checked(self.url(upstream_model, "converse"), native)
        openai_body, usage = from_converse(data, body.get("model") or upstream_model, self.provider)
        return ChatResult(body=openai_body, usage=usage)

    async def chat_stream(self, body: dict[str, Any], upstream_model: str) -> ChatStream:
        native = self.native_body(body, upstream_model)
        url = self.url(upstream_model, "converse-stream")
        content = json_bytes.dumps(native)
        headers = self._signed_headers(url, content, EVENTSTREAM_CONTENT_TYPE)
        response = await open_stream(
            self.client,
            self.provider,
            url,
            headers,
            content,
            EVENTSTREAM_CONTENT_TYPE,
            error_from=bedrock_error_from_response,
        )
        return ConverseChatStream(self.provider, response, body.get("model") or upstream_model)  # type: ignore[return-value]

    async def embed_texts(
        self, inputs: list[str], body: dict[str, Any], upstream_model: str
    ) -> tuple[list[list[float]], Usage]:
        if len(inputs) > EMBEDDING_INPUTS_MAX:
            raise unsupported(
                self.provider, "input", f"at most {EMBEDDING_INPUTS_MAX} inputs per request"
            )
        if not upstream_model.startswith(("amazon.titan-embed", "us.amazon.titan-embed")):
            raise unsupported(
                self.provider, "model", "Bedrock embeddings are served for Titan models only"
            )
        url = self.url(upstream_model, "invoke")
        limiter = asyncio.Semaphore(EMBEDDING_CONCURRENCY_MAX)

        async def embed(text: str) -> tuple[list[float], int]:
            payload: dict[str, Any] = {"inputText": text}
            if body.get("dimensions") is not None:
                payload["dimensions"] = body["dimensions"]
            async with limiter:
                data = await self._post_checked(url, payload)
            if not isinstance(data, dict) or not isinstance(data.get("embedding"), list):
                raise malformed(self.provider, "Titan response without embedding")
            return list(data["embedding"]), as_int(data.get("inputTextTokenCount"))

        results = await asyncio.gather(*(embed(text) for text in inputs))
        usage = Usage(prompt_tokens=sum(tokens for _, tokens in results), completion_tokens=0)
        vectors = [vector for vector, _ in results]
        return vectors, usage


class ConverseChatStream(TranslatingStream, ChatStream):
    async def _translate(self) -> Any:
        decoder = EventStreamDecoder()
        tool_index_of_block: dict[int, int] = {}
        stop_reason: str | None = None
        saw_metadata = False
        started = False
        async for raw in self.response.aiter_bytes():
            for message in decoder.feed(raw):
                if message.message_type in ("exception", "error"):
                    payload = orjson.loads(message.payload) if message.payload else {}
                    error_type = message.exception_type or ""
                    raise bedrock_error(
                        self.provider,
                        ERROR_TYPE_STATUS.get(error_type.lower(), 502),
                        {"x-amzn-errortype": error_type},
                        payload,
                    )
                event_type = message.event_type
                payload = orjson.loads(message.payload) if message.payload else {}
                if event_type == "messageStart":
                    started = True
                    yield self.chunk({"role": "assistant", "content": ""})
                elif event_type == "contentBlockStart":
                    start = payload.get("start") or {}
                    if "toolUse" in start:
                        index = len(tool_index_of_block)
                        tool_index_of_block[as_int(payload.get("contentBlockIndex"))] = index
                        use = start["toolUse"]
                        yield self.tool_call_start(index, use.get("toolUseId"), use.get("name"))
                elif event_type == "contentBlockDelta":
                    delta = payload["delta"]
                    if "text" in delta:
                        yield self.chunk({"content": delta["text"]})
                    elif "toolUse" in delta:
                        index = tool_index_of_block[as_int(payload.get("contentBlockIndex"))]
                        arguments = delta["toolUse"].get("input", "")
                        yield self.tool_call_arguments(index, arguments)
                elif event_type == "messageStop":
                    stop_reason = str(payload.get("stopReason") or "end_turn")
                elif event_type == "metadata":
                    saw_metadata = True
                    usage = usage_from_converse(payload.get("usage"))
                    if usage is not None:
                        self.usage = usage
        decoder.finish()
        if decoder.pending_bytes:
            raise truncated(self.provider, "the end of an event-stream message")
        if not started or stop_reason is None:
            raise truncated(self.provider, "messageStop")
        self.finish_reason = FINISH_REASONS.get(stop_reason, "stop")
        yield self.chunk({}, self.finish_reason)
        if not saw_metadata:
            self.usage = None
