"""What the domain stores today has the shape its released fixtures record: the fixture
generator drives the real handlers through every lifecycle it knows, and each event it
stores must match the committed fixture of its class and version field for field. A renamed,
added or dropped stored field fails here, not in a customer's replay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import make_event_fixtures

COMMITTED = make_event_fixtures.OUT


def test_every_event_the_domain_stores_today_matches_its_committed_fixture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(make_event_fixtures, "OUT", tmp_path)
    make_event_fixtures.main()
    generated = sorted(tmp_path.glob("*.json"))
    assert len(generated) >= 29  # every lifecycle the generator drives stored something
    for path in generated:
        committed = COMMITTED / path.name
        assert committed.exists(), f"{path.name}: a new event class or version has no fixture"
        fresh = json.loads(path.read_text())
        released = json.loads(committed.read_text())
        assert fresh["topic"] == released["topic"]
        assert sorted(fresh["state"]) == sorted(released["state"]), path.name
