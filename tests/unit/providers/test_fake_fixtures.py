"""The fixtures other suites use to get a fake upstream (the core's tests use fake_upstream)."""

from __future__ import annotations

import httpx

from tests.fakes.openai_fake import FakeUpstream


def test_fake_upstream_is_an_openai_fake_that_records_and_follows_its_script(fake_upstream):
    assert isinstance(fake_upstream, FakeUpstream)
    fake_upstream.script(text="scripted", prompt_tokens=3, completion_tokens=1)
    response = httpx.post(
        fake_upstream.base_url + "/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.json()["choices"][0]["message"]["content"] == "scripted"
    assert fake_upstream.requests == [{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}]
    # The queue is empty again: the default answer follows.
    again = httpx.post(fake_upstream.base_url + "/chat/completions", json={"model": "m", "messages": []})
    assert again.json()["choices"][0]["message"]["content"] == "Hello from the fake upstream."


def test_each_provider_fixture_serves_its_own_wire_format(anthropic_upstream, bedrock_upstream):
    assert anthropic_upstream.provider == "anthropic"
    assert bedrock_upstream.provider == "bedrock"
    response = httpx.post(anthropic_upstream.base_url + "/v1/messages", json={"max_tokens": 5, "messages": []}, headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})
    assert response.json()["type"] == "message"


def test_latency_is_scriptable_for_slow_upstream_tests(openai_upstream):
    import time

    openai_upstream.script(latency_s=0.2)
    started = time.perf_counter()
    httpx.post(openai_upstream.base_url + "/chat/completions", json={"model": "m", "messages": []})
    assert time.perf_counter() - started >= 0.2
