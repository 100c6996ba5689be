from __future__ import annotations

import pytest

from gateway.pii.engine import PiiScreener


@pytest.fixture(scope="session")
def screener() -> PiiScreener:
    # Presidio + two spaCy models take seconds to load: one warmed screener per test session.
    engine = PiiScreener()
    engine.warm()
    yield engine
    engine.close()
