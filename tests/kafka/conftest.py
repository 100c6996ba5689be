"""The Kafka tests share one real broker (tansu) for the session; each test uses topics and
consumer groups of its own."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.support.kafka_broker import tansu_broker


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    with tansu_broker() as bootstrap:
        yield bootstrap


@pytest.fixture
def kafka_env(kafka_bootstrap: str) -> dict[str, str]:
    """Environment naming the broker and a topic and group no other test uses."""
    suffix = secrets.token_hex(4)
    return {
        "LEDGERGATE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "LEDGERGATE_KAFKA_TOPIC": f"ledgergate.events.{suffix}",
        "LEDGERGATE_KAFKA_GROUP_ID": f"ledgergate-projections-{suffix}",
    }
