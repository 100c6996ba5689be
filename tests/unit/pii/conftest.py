from __future__ import annotations

import pytest

from gateway.pii.engine import PiiEngineSettings, PiiScreener
from gateway.pii.service import shared_screener


@pytest.fixture(scope="session")
def screener() -> PiiScreener:
    # Presidio + two spaCy models take seconds to load: one warmed screener per test
    # session, the same process-wide instance the gateway's e2e tests use.
    engine = shared_screener(PiiEngineSettings())
    engine.warm()
    return engine
