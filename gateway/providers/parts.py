"""OpenAI content parts → a provider's blocks: the one walk over `text`, `image_url` and `file`
parts that the non-OpenAI adapters share, the merge of consecutive same-role turns that
APIs wanting user/assistant alternation need, and the one walk over OpenAI messages into such
turns. Each adapter states only how it spells a block, a tool call and a tool result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.providers.common import (
    content_text,
    parse_image_url,
    parse_tool_arguments,
    unsupported,
)
from gateway.providers.documents import DocumentPart, document_part

Block = dict[str, Any]


@dataclass(frozen=True)
class Spelling:
    """How one provider writes each kind of part. The image and document spellings take the
    provider name first, to refuse what that provider cannot take with its own error."""

    text: Callable[[str], Block]
    # An image: either the part's URL as it is (a provider that takes OpenAI's image part
    # unchanged), or split into an inline image and a remote one.
    image_as_is: Callable[[Any], Block] | None = None
    inline_image: Callable[[str, str | None, str | None], Block] | None = (
        None  # provider, type, b64
    )
    remote_image: Callable[[str, str], Block] | None = None  # provider, URL
    document: Callable[[DocumentPart], Block] | None = None  # None: no document input
    # For `alternating_turns`: an assistant's tool call (id, name, arguments as an object), and
    # a tool message's result (provider, the call's id, the name of the earlier call it
    # answers or None when there is none, the message's content).
    tool_call: Callable[[Any, Any, Any], Block] | None = None
    tool_result: Callable[[str, Any, str | None, Any], Block] | None = None


def content_blocks(provider: str, content: Any, spelling: Spelling) -> list[Block]:
    """`content` (a string or a list of OpenAI parts) as `provider`'s blocks; a part type it
    cannot take is a 400 naming the type (never echoing content)."""
    if isinstance(content, str):
        return [spelling.text(content)] if content else []
    blocks: list[Block] = []
    for part in content or []:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            blocks.append(spelling.text(str(part.get("text") or "")))
        elif kind == "image_url" and spelling.image_as_is is not None:
            blocks.append(spelling.image_as_is((part.get("image_url") or {}).get("url")))
        elif kind == "image_url" and spelling.inline_image and spelling.remote_image:
            image = part.get("image_url") or {}
            media_type, data, url = parse_image_url(str(image.get("url") or ""))
            if url is not None:
                blocks.append(spelling.remote_image(provider, url))
            else:
                blocks.append(spelling.inline_image(provider, media_type, data))
        elif kind == "file" and spelling.document is not None:
            blocks.append(spelling.document(document_part(part)))
        else:
            raise unsupported(provider, "messages", f"content part type {str(kind)[:40]!r}")
    return blocks


def append_turn(turns: list[Block], role: str, blocks: list[Block], key: str = "content") -> None:
    """Add `blocks` as a `role` turn, merged into the previous turn when it has the same role
    (several OpenAI tool messages become one user turn of tool results)."""
    if turns and turns[-1]["role"] == role:
        turns[-1][key].extend(blocks)
    else:
        turns.append({"role": role, key: blocks})


def alternating_turns(
    provider: str,
    messages: Any,
    spelling: Spelling,
    *,
    assistant_role: str = "assistant",
    key: str = "content",
) -> tuple[list[str], list[Block]]:
    """OpenAI `messages` → (the system texts, in order; the user/assistant turns). An assistant
    message's tool calls become the spelling's tool_call blocks after its content; a tool
    message becomes a user turn of its tool_result; any other role is a 400."""
    tool_call, tool_result = spelling.tool_call, spelling.tool_result
    if tool_call is None or tool_result is None:
        raise ValueError(f"{provider}'s spelling has no tool call or tool result")
    system: list[str] = []
    turns: list[Block] = []
    call_names: dict[str, str] = {}  # each earlier tool call's name, by its id
    for message in messages or []:
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(content_text(message.get("content")))
        elif role == "user":
            blocks = content_blocks(provider, message.get("content"), spelling)
            append_turn(turns, "user", blocks, key)
        elif role == "assistant":
            blocks = content_blocks(provider, message.get("content"), spelling)
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                call_names[str(call.get("id"))] = str(function.get("name"))
                arguments = parse_tool_arguments(provider, function.get("arguments"))
                blocks.append(tool_call(call.get("id"), function.get("name"), arguments))
            append_turn(turns, assistant_role, blocks, key)
        elif role == "tool":
            call_id = message.get("tool_call_id")
            name = call_names.get(str(call_id))
            result = tool_result(provider, call_id, name, message.get("content"))
            append_turn(turns, "user", [result], key)
        else:
            raise unsupported(provider, "messages", f"role {str(role)[:20]!r}")
    return system, turns
