"""pytest fixtures for the fake upstreams. Use from a conftest.py:

    from tests.fakes.fixtures import *  # noqa: F403  (openai_upstream, anthropic_upstream, …)

Each fixture starts a real HTTP server on 127.0.0.1 (a free port) for one test and stops it
after; `fake_upstreams` builds them by provider name.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import pytest

from tests.fakes.anthropic_fake import AnthropicFake
from tests.fakes.bedrock_fake import BedrockFake
from tests.fakes.cohere_fake import CohereFake
from tests.fakes.google_fake import GoogleFake
from tests.fakes.openai_fake import FakeUpstream
from tests.fakes.server import FakeUpstreamBase

FAKE_FACTORIES = {
    "openai": lambda: FakeUpstream("openai"),
    "mistral": lambda: FakeUpstream("mistral", models=("mistral-small-latest", "mistral-embed")),
    "moonshot": lambda: FakeUpstream("moonshot", models=("kimi-k2-0905-preview",)),
    "xai": lambda: FakeUpstream("xai", models=("grok-4",)),
    "anthropic": AnthropicFake,
    "google": GoogleFake,
    "bedrock": BedrockFake,
    "cohere": CohereFake,
}
ALL_PROVIDERS = tuple(FAKE_FACTORIES)


def start_fake(provider: str) -> FakeUpstreamBase:
    return FAKE_FACTORIES[provider]().start()


@contextmanager
def started_fakes(providers: Iterable[str]) -> Iterator[dict[str, FakeUpstreamBase]]:
    """The fake upstreams of `providers`, by provider name, each on its own port; all stopped
    on leaving the block."""
    started: dict[str, FakeUpstreamBase] = {}
    try:
        for provider in providers:
            started[provider] = start_fake(provider)
        yield started
    finally:
        for fake in started.values():
            fake.stop()


def _fixture(provider: str):  # type: ignore[no-untyped-def]
    @pytest.fixture
    def fake() -> Iterator[FakeUpstreamBase]:
        upstream = start_fake(provider)
        try:
            yield upstream
        finally:
            upstream.stop()

    return fake


openai_upstream = _fixture("openai")
fake_upstream = openai_upstream  # the name the core tests use
mistral_upstream = _fixture("mistral")
moonshot_upstream = _fixture("moonshot")
xai_upstream = _fixture("xai")
anthropic_upstream = _fixture("anthropic")
google_upstream = _fixture("google")
bedrock_upstream = _fixture("bedrock")
cohere_upstream = _fixture("cohere")


@pytest.fixture(params=ALL_PROVIDERS)
def any_upstream(request: pytest.FixtureRequest) -> Iterator[FakeUpstreamBase]:
    """Parametrised over all eight providers' fakes."""
    upstream = start_fake(request.param)
    try:
        yield upstream
    finally:
        upstream.stop()
