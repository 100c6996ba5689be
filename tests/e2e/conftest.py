"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.serving import BackgroundServer
from gateway.simulator import SimulatorState, create_simulator_app


@pytest.fixture
def upstreams() -> Iterator[tuple[tuple[BackgroundServer, SimulatorState], ...]]:
    """The shared (global) OpenAI-format upstream and a project's private one."""
    shared, private = SimulatorState(), SimulatorState()
    with (
        BackgroundServer(create_simulator_app(shared)) as shared_server,
        BackgroundServer(create_simulator_app(private)) as private_server,
    ):
        yield (shared_server, shared), (private_server, private)
