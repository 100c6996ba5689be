"""Helpers shared by the native (non-OpenAI-shaped) adapters: HTTP calls with the one error
table, OpenAI object builders, and the checks that refuse a parameter a provider cannot
honour (a clear 400 naming the parameter, never a silent drop)."""

from __future__ import annotations

import base64
import secrets
import struct
import time
from collections.abc import Iterable, Mapping
from typing import Any

import httpx
import orjson

from gateway import json_bytes
from gateway.providers.base import (
    EmbeddingResult,
    ProviderAdapter,
    UpstreamError,
    Usage,
    invalid_request,
)
from gateway.providers.errors import error_from_response, error_from_transport, malformed


def new_completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


def new_tool_call_id() -> str:
    return "call_" + secrets.token_hex(12)


def unix_now() -> int:
    return int(time.time())


def unsupported(provider: str, param: str, detail: str = "") -> UpstreamError:
    message = f"{provider} does not support the parameter {param!r}"
    if detail:
        message += f": {detail}"
    return invalid_request(provider, "unsupported_parameter", message, param=param)


def reject_unsupported(provider: str, body: dict[str, Any], params: Iterable[str]) -> None:
    """Refuse parameters this provider has no equivalent for, when set to a non-default value.
    (False/None/0 are what SDKs send by default, so they pass.)"""
    for param in params:
        value = body.get(param)
        if value in (None, False, 0):
            continue
        if param == "n" and value == 1:
            continue
        raise unsupported(provider, param)


def reject_json_mode(provider: str, body: dict[str, Any], why: str) -> None:
    """Refuse a response_format other than text, for a provider that has no JSON mode."""
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") not in (None, "text"):
        raise unsupported(provider, "response_format", why)


def max_output_tokens(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens")
    if value is None:
        value = body.get("max_tokens")
    return int(value) if value is not None else None


def native_params(
    body: dict[str, Any], names: Mapping[str, str], *, max_tokens_as: str | None = None
) -> dict[str, Any]:
    """The OpenAI parameters of `names` ({OpenAI name: the provider's name}) that the body sets,
    under the provider's names; a parameter sent as null is unset. With `max_tokens_as`, the
    output limit (max_completion_tokens, else max_tokens) first, under that name."""
    params: dict[str, Any] = {}
    limit = max_output_tokens(body)
    if max_tokens_as is not None and limit is not None:
        params[max_tokens_as] = limit
    for openai_name, native_name in names.items():
        if body.get(openai_name) is not None:
            params[native_name] = body[openai_name]
    return params


def stop_list(body: dict[str, Any]) -> list[str] | None:
    stop = body.get("stop")
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    return [str(item) for item in stop]


def content_text(content: Any) -> str:
    """The text of an OpenAI message content (string or list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    pieces = []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "text":
            pieces.append(str(part.get("text") or ""))
    return "".join(pieces)


def parse_image_url(url: str) -> tuple[str | None, str | None, str | None]:
    """An OpenAI image_url → (media_type, base64 data, remote url). Exactly one of
    (data) or (url) is set."""
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        if not sep or not header.endswith(";base64"):
            raise invalid_request(
                "gateway",
                "invalid_image_url",
                "an image data URL must be base64-encoded (data:image/png;base64,…)",
                param="messages",
            )
        return header[: -len(";base64")].lower(), data, None
    return None, None, url


def parse_tool_arguments(provider: str, arguments: Any) -> Any:
    """OpenAI carries tool-call arguments as a JSON string; native APIs want an object."""
    if isinstance(arguments, dict):
        return arguments
    if arguments in (None, ""):
        return {}
    try:
        return orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise invalid_request(
            provider,
            "invalid_tool_arguments",
            "a tool call's arguments are not valid JSON",
            param="messages",
        ) from None


def dumps_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def completion_body(
    *,
    completion_id: str,
    model: str,
    texts: list[str],
    tool_calls: list[dict[str, Any]],
    finish_reason: str,
    usage: Usage,
    created: int | None = None,
) -> dict[str, Any]:
    """A chat.completion of one choice: the texts joined as its content, which is null only
    for an answer that is tool calls and no text."""
    content = "".join(texts) if texts or not tool_calls else None
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created or unix_now(),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}
        ],
        "usage": usage.as_openai(),
    }


def openai_tool_call(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    """A provider's tool call (arguments as an object) as OpenAI's: arguments as JSON text."""
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": dumps_text(arguments or {})},
    }


def chunk(
    completion_id: str,
    model: str,
    created: int,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    index: int = 0,
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [
            {"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        ],
    }


async def post_json(
    client: httpx.AsyncClient,
    provider: str,
    url: str,
    payload: dict[str, Any],
    headers: dict[str, str],
    *,
    content: bytes | None = None,
) -> Any:
    try:
        response = await client.post(
            url,
            content=content if content is not None else json_bytes.dumps(payload),
            headers=headers,
        )
    except httpx.HTTPError as error:
        raise error_from_transport(provider, error) from None
    if response.status_code >= 400:
        raise error_from_response(provider, response)
    content_type = response.headers.get("content-type", "")
    if "json" not in content_type:
        raise malformed(provider, f"expected JSON, got content type {content_type[:60]!r}")
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise malformed(provider, "body is not JSON") from None


async def open_stream(
    client: httpx.AsyncClient,
    provider: str,
    url: str,
    headers: dict[str, str],
    content: bytes,
    expected_content_type: str,
    *,
    error_from: Any = None,
) -> httpx.Response:
    """Send a streaming request; raise UpstreamError for any failure before the first byte
    of the body (HTTP error status, wrong content type, transport failure)."""
    request = client.build_request("POST", url, content=content, headers=headers)
    try:
        response = await client.send(request, stream=True)
    except httpx.HTTPError as error:
        raise error_from_transport(provider, error) from None
    if response.status_code >= 400:
        try:
            await response.aread()
        except httpx.HTTPError:
            pass
        finally:
            await response.aclose()
        raise (error_from or error_from_response)(provider, response)
    content_type = response.headers.get("content-type", "")
    if expected_content_type not in content_type:
        await response.aclose()
        raise malformed(provider, f"expected {expected_content_type}, got {content_type[:60]!r}")
    return response


async def open_sse(
    adapter: ProviderAdapter, url: str, headers: dict[str, str], payload: dict[str, Any]
) -> httpx.Response:
    """`open_stream` for an API that takes a JSON body and answers text/event-stream."""
    return await open_stream(
        adapter.client,
        adapter.provider,
        url,
        headers,
        json_bytes.dumps(payload),
        "text/event-stream",
    )


def as_int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def usage_beside_cache(input_tokens: Any, output_tokens: Any, reads: Any, writes: Any) -> Usage:
    """Usage from an API whose input count excludes cache reads and writes (Anthropic's, and
    Bedrock Converse's): OpenAI's prompt_tokens includes cached tokens, so both are added back
    and the reads are reported as cached_tokens."""
    cache_read = as_int(reads)
    return Usage(
        prompt_tokens=as_int(input_tokens) + cache_read + as_int(writes),
        completion_tokens=as_int(output_tokens),
        cached_tokens=cache_read,
    )


class TranslatingStream:
    """Base of the native adapters' ChatStreams: subclasses implement `_translate()` (yield
    OpenAI chunk dicts from the provider's events); this wrapper turns every way a stream can
    go wrong into an UpstreamError and always closes the upstream response."""

    provider: str = ""

    def __init__(self, provider: str, response: httpx.Response, model: str) -> None:
        self.provider = provider
        self.response = response
        self.model = model
        self.completion_id = new_completion_id()
        self.created = unix_now()
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.prompt_tokens_reported: int | None = None

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return chunk(self.completion_id, self.model, self.created, delta, finish_reason)

    def tool_call_start(
        self, index: int, call_id: Any, name: Any, arguments: str = ""
    ) -> dict[str, Any]:
        """The chunk that opens tool call `index`: its id and name, and any first arguments."""
        function = {"name": name, "arguments": arguments}
        call = {"index": index, "id": call_id, "type": "function", "function": function}
        return self.chunk({"tool_calls": [call]})

    def tool_call_arguments(self, index: int, arguments: str) -> dict[str, Any]:
        """The chunk that carries the next piece of tool call `index`'s arguments."""
        return self.chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]})

    def __aiter__(self) -> Any:
        return self._guarded()

    async def _translate(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError
        yield {}

    async def _guarded(self) -> Any:
        from gateway.providers.eventstream import EventStreamError
        from gateway.providers.sse import SseTooLarge

        try:
            async for item in self._translate():
                yield item
        except UpstreamError:
            raise
        except httpx.HTTPError as error:
            raise error_from_transport(self.provider, error) from None
        except (SseTooLarge, EventStreamError) as error:
            raise malformed(self.provider, str(error)) from None
        except orjson.JSONDecodeError:
            raise malformed(self.provider, "stream event is not JSON") from None
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
            raise malformed(
                self.provider, f"unexpected stream event shape ({type(error).__name__})"
            ) from None
        finally:
            await self.response.aclose()

    async def aclose(self) -> None:
        await self.response.aclose()


def truncated(provider: str, what: str) -> UpstreamError:
    return UpstreamError(
        status=502,
        code="upstream_stream_truncated",
        message=f"{provider}: the stream ended before {what}",
        provider=provider,
    )


def embeddings_body(
    vectors: list[list[float]], model: str, usage: Usage, encoding_format: str | None
) -> dict[str, Any]:
    """An OpenAI embeddings list. base64 is little-endian float32, as the openai SDK decodes it
    (and as it asks for by default)."""
    data = []
    for index, vector in enumerate(vectors):
        embedding: Any
        if encoding_format == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        else:
            embedding = [float(value) for value in vector]
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens},
    }


def embedding_result(
    vectors: list[list[float]], model: str, usage: Usage, encoding_format: str | None
) -> EmbeddingResult:
    """A provider's vectors and usage as the gateway's embeddings answer."""
    return EmbeddingResult(
        body=embeddings_body(vectors, model, usage, encoding_format), usage=usage
    )


class TextEmbeddingAdapter(ProviderAdapter):
    """An adapter whose API embeds text only. Every such embeddings call checks the
    encoding_format and that the input is text, and answers in OpenAI's shape under the
    client's model name; a subclass implements only `embed_texts`, the provider's call."""

    async def embeddings(self, body: dict[str, Any], upstream_model: str) -> EmbeddingResult:
        encoding_format = check_encoding_format(self.provider, body)
        inputs = embedding_inputs(self.provider, body)
        vectors, usage = await self.embed_texts(inputs, body, upstream_model)
        return embedding_result(
            vectors, body.get("model") or upstream_model, usage, encoding_format
        )

    async def embed_texts(
        self, inputs: list[str], body: dict[str, Any], upstream_model: str
    ) -> tuple[list[list[float]], Usage]:
        """One vector per input, in order, and the usage the provider reports."""
        raise NotImplementedError


def one_per_input(provider: str, items: Any, inputs: list[str]) -> list[Any]:
    """The provider's embeddings list, checked: one item for each input."""
    if not isinstance(items, list) or len(items) != len(inputs):
        raise malformed(provider, "embeddings missing or of the wrong count")
    return items


def embedding_inputs(provider: str, body: dict[str, Any]) -> list[str]:
    raw = body.get("input")
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(item, str) for item in raw):
        return list(raw)
    raise invalid_request(
        provider,
        "unsupported_parameter",
        f"{provider} embeddings take text input only (a string or a list of strings), "
        "not token arrays",
        param="input",
    )


def check_encoding_format(provider: str, body: dict[str, Any]) -> str:
    encoding_format = body.get("encoding_format") or "float"
    if encoding_format not in ("float", "base64"):
        raise invalid_request(
            provider,
            "invalid_value",
            "encoding_format must be 'float' or 'base64'",
            param="encoding_format",
        )
    return str(encoding_format)


def untranslatable(provider: str, error: Exception) -> UpstreamError:
    """A request body whose shape the translation cannot follow is the client's mistake:
    a 400 naming the problem, never a 500 with a traceback."""
    return invalid_request(
        provider,
        "invalid_request",
        f"the request cannot be translated for {provider}: a field has an unexpected "
        f"shape ({type(error).__name__}: {str(error)[:80]})",
    )


def function_tools(provider: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The `tools` array, checked: each a {"type": "function", "function": {"name", …}}."""
    tools = body.get("tools") or []
    checked: list[dict[str, Any]] = []
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if (
            not isinstance(tool, dict)
            or tool.get("type", "function") != "function"
            or not isinstance(function, dict)
            or not isinstance(function.get("name"), str)
            or not function["name"]
            or not isinstance(function.get("parameters", {}) or {}, dict)
        ):
            raise invalid_request(
                provider,
                "invalid_request",
                f"tools[{index}] must be {{'type': 'function', 'function': {{'name': …, "
                "'parameters': {…}}}}}",
                param=f"tools[{index}]",
            )
        checked.append(function)
    return checked


def tool_parameters(function: dict[str, Any]) -> dict[str, Any]:
    """A function tool's JSON schema; one declared without parameters takes none (every native
    API wants a schema object)."""
    return function.get("parameters") or {"type": "object", "properties": {}}


def named_function(choice: dict[str, Any]) -> Any:
    """The function a named `tool_choice` ({"type": "function", "function": {"name": …}})
    forces; None when it names none."""
    return (choice.get("function") or {}).get("name")


def translate(provider: str, function: Any, body: dict[str, Any], *args: Any) -> Any:
    try:
        return function(body, *args)
    except UpstreamError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as error:
        raise untranslatable(provider, error) from None
