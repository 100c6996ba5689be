"""Request translation, OpenAI → each provider's native body, checked field by field (no
network): system prompts, multi-turn, images, tools, tool results, parameters, and the
parameters a provider cannot honour (a clear 400, never a silent drop)."""

from __future__ import annotations

import pytest

from gateway.providers.anthropic import to_anthropic
from gateway.providers.base import ProviderEndpoint, UpstreamError
from gateway.providers.bedrock import to_converse
from gateway.providers.cohere import to_cohere
from gateway.providers.google import to_gemini
from gateway.providers.mistral import MistralAdapter
from gateway.providers.moonshot import MoonshotAdapter

PNG = "iVBORw0KGgo="
CONVERSATION = {
    "model": "alias",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"q": "png"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"answer": "an image"}'},
        {"role": "user", "content": "Thanks"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Look up",
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
            },
        }
    ],
    "tool_choice": "required",
    "max_completion_tokens": 64,
    "temperature": 0.2,
    "top_p": 0.9,
    "stop": "END",
}


def test_anthropic_gets_a_top_level_system_image_blocks_tool_use_and_tool_results():
    native = to_anthropic(CONVERSATION, "claude-sonnet-4-5")
    assert native["system"] == "You are terse."
    assert native["max_tokens"] == 64
    assert native["stop_sequences"] == ["END"]
    assert native["tool_choice"] == {"type": "any"}
    assert native["tools"][0]["input_schema"]["properties"] == {"q": {"type": "string"}}
    roles = [m["role"] for m in native["messages"]]
    assert roles == ["user", "assistant", "user"]
    assert native["messages"][0]["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
    }
    assert native["messages"][1]["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "lookup", "input": {"q": "png"}}
    ]
    # The tool result and the next user turn merge into one user message (strict alternation).
    assert native["messages"][2]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": "call_1",
        "content": '{"answer": "an image"}',
    }
    assert native["messages"][2]["content"][1] == {"type": "text", "text": "Thanks"}


def test_anthropic_gets_a_default_max_tokens_because_it_requires_one():
    native = to_anthropic({"messages": [{"role": "user", "content": "hi"}]}, "claude-sonnet-4-5")
    assert native["max_tokens"] == 4096


def test_gemini_gets_system_instruction_model_role_function_calls_and_responses():
    native = to_gemini(CONVERSATION)
    assert native["systemInstruction"] == {"parts": [{"text": "You are terse."}]}
    assert [c["role"] for c in native["contents"]] == ["user", "model", "user"]
    assert native["contents"][0]["parts"][1] == {
        "inlineData": {"mimeType": "image/png", "data": PNG}
    }
    assert native["contents"][1]["parts"][0]["functionCall"] == {
        "id": "call_1",
        "name": "lookup",
        "args": {"q": "png"},
    }
    assert native["contents"][2]["parts"][0]["functionResponse"] == {
        "id": "call_1",
        "name": "lookup",
        "response": {"answer": "an image"},
    }
    assert native["generationConfig"] == {
        "maxOutputTokens": 64,
        "temperature": 0.2,
        "topP": 0.9,
        "stopSequences": ["END"],
    }
    assert native["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}


def test_gemini_passes_through_n_seed_logprobs_and_json_schema():
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "n": 2,
        "seed": 7,
        "logprobs": True,
        "top_logprobs": 3,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "object"}},
        },
    }
    config = to_gemini(body)["generationConfig"]
    assert config == {
        "seed": 7,
        "candidateCount": 2,
        "responseLogprobs": True,
        "logprobs": 3,
        "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object"},
    }


def test_bedrock_gets_converse_blocks_inference_config_and_tool_config():
    native = to_converse(CONVERSATION)
    assert native["system"] == [{"text": "You are terse."}]
    assert native["inferenceConfig"] == {
        "maxTokens": 64,
        "temperature": 0.2,
        "topP": 0.9,
        "stopSequences": ["END"],
    }
    assert native["messages"][0]["content"][1] == {
        "image": {"format": "png", "source": {"bytes": PNG}}
    }
    assert native["messages"][1]["content"] == [
        {"toolUse": {"toolUseId": "call_1", "name": "lookup", "input": {"q": "png"}}}
    ]
    assert native["messages"][2]["content"][0] == {
        "toolResult": {"toolUseId": "call_1", "content": [{"text": '{"answer": "an image"}'}]}
    }
    assert native["toolConfig"]["toolChoice"] == {"any": {}}
    assert native["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["type"] == "object"


def test_cohere_gets_v2_messages_with_p_stop_sequences_and_required_tool_choice():
    native = to_cohere(CONVERSATION, "command-a-03-2025")
    assert [m["role"] for m in native["messages"]] == [
        "system",
        "user",
        "assistant",
        "tool",
        "user",
    ]
    assert native["messages"][2]["tool_calls"][0]["function"] == {
        "name": "lookup",
        "arguments": '{"q": "png"}',
    }
    assert native["p"] == 0.9 and native["stop_sequences"] == ["END"] and native["max_tokens"] == 64
    assert native["tool_choice"] == "REQUIRED"


NAMED_CHOICE = {"type": "function", "function": {"name": "lookup"}}


@pytest.mark.parametrize(
    ("translate", "choice_of", "expected"),
    [
        (
            lambda b: to_anthropic(b, "claude-sonnet-4-5"),
            lambda native: native["tool_choice"],
            {"type": "tool", "name": "lookup"},
        ),
        (
            lambda b: to_converse(b),
            lambda native: native["toolConfig"]["toolChoice"],
            {"tool": {"name": "lookup"}},
        ),
        (
            lambda b: to_gemini(b),
            lambda native: native["toolConfig"]["functionCallingConfig"],
            {"mode": "ANY", "allowedFunctionNames": ["lookup"]},
        ),
    ],
)
def test_a_named_tool_choice_forces_that_function_in_each_native_spelling(
    translate, choice_of, expected
):
    native = translate({**CONVERSATION, "tool_choice": NAMED_CHOICE})
    assert choice_of(native) == expected


def test_mistral_gets_only_fields_it_accepts_with_its_own_names():
    import httpx

    adapter = MistralAdapter(ProviderEndpoint("mistral", "http://x/v1"), httpx.AsyncClient())
    native = adapter.native_body(
        {**CONVERSATION, "seed": 3, "user": "u1", "pii_policy": {"enabled": True}},
        "mistral-small-latest",
    )
    assert native["max_tokens"] == 64 and native["random_seed"] == 3
    assert (
        "max_completion_tokens" not in native
        and "user" not in native
        and "pii_policy" not in native
    )
    assert "seed" not in native


def test_moonshot_gets_max_tokens_and_no_stream_options():
    import httpx

    adapter = MoonshotAdapter(ProviderEndpoint("moonshot", "http://x/v1"), httpx.AsyncClient())
    native = adapter.native_body(
        {**CONVERSATION, "stream_options": {"include_usage": True}}, "kimi"
    )
    assert native["max_tokens"] == 64 and "stream_options" not in native


@pytest.mark.parametrize(
    ("translate", "param", "value"),
    [
        (lambda b: to_anthropic(b, "claude"), "logprobs", True),
        (lambda b: to_anthropic(b, "claude"), "n", 2),
        (lambda b: to_anthropic(b, "claude"), "seed", 1),
        (lambda b: to_anthropic(b, "claude"), "response_format", {"type": "json_object"}),
        (lambda b: to_converse(b), "logprobs", True),
        (lambda b: to_converse(b), "n", 3),
        (lambda b: to_cohere(b, "command"), "n", 2),
        (lambda b: to_gemini(b), "logit_bias", {"1": 5}),
    ],
)
def test_a_parameter_the_provider_cannot_honour_is_a_400_naming_it(translate, param, value):
    with pytest.raises(UpstreamError) as caught:
        translate({"messages": [{"role": "user", "content": "hi"}], param: value})
    assert caught.value.status == 400
    assert caught.value.code == "unsupported_parameter"
    assert caught.value.param == param


@pytest.mark.parametrize("param", ["logprobs", "n", "seed", "frequency_penalty"])
def test_default_values_that_sdks_send_are_not_refused(param):
    default = {"logprobs": False, "n": 1, "seed": None, "frequency_penalty": 0}[param]
    to_anthropic({"messages": [{"role": "user", "content": "hi"}], param: default}, "claude")


def test_bedrock_refuses_remote_image_urls_because_it_takes_only_inline_bytes():
    body = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}],
            }
        ]
    }
    with pytest.raises(UpstreamError) as caught:
        to_converse(body)
    assert caught.value.status == 400


def test_a_tool_result_without_a_matching_call_is_a_400_for_gemini():
    body = {"messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]}
    with pytest.raises(UpstreamError) as caught:
        to_gemini(body)
    assert caught.value.code == "invalid_tool_result"


def test_invalid_tool_call_arguments_are_a_400_not_a_crash():
    body = {
        "messages": [
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "c",
                        "type": "function",
                        "function": {"name": "f", "arguments": "{not json"},
                    }
                ],
            }
        ]
    }
    with pytest.raises(UpstreamError) as caught:
        to_anthropic(body, "claude")
    assert caught.value.code == "invalid_tool_arguments"


MALFORMED_BODIES = {
    "tool without function": {
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function"}],
    },
    "tool name not a string": {
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": 5}}],
    },
    "image_url as a bare string": {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": "data:image/png;base64,AAAA"}],
            }
        ]
    },
    "tool call not an object": {
        "messages": [{"role": "assistant", "content": None, "tool_calls": ["call"]}]
    },
}


@pytest.mark.parametrize("provider", ["anthropic", "google", "bedrock", "cohere"])
@pytest.mark.parametrize("shape", sorted(MALFORMED_BODIES))
async def test_a_body_the_translation_cannot_follow_is_a_400_never_a_crash(provider, shape):
    import httpx

    from gateway.providers.registry import build_adapter

    adapter = build_adapter(
        provider, ProviderEndpoint(provider, "http://127.0.0.1:9", api_key="k"), httpx.AsyncClient()
    )
    for call in (adapter.chat, adapter.chat_stream):
        with pytest.raises(UpstreamError) as caught:
            await call({"model": "m", **MALFORMED_BODIES[shape]}, "m")
        assert caught.value.status == 400
