"""Shared fixtures: both storage backends (SQLite file, real PostgreSQL), a simulated
OpenAI-format upstream over real HTTP, and a running gateway in front of it."""

from __future__ import annotations

import ast
import functools
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import freezegun
import pytest

from gateway.serving import BackgroundServer
from gateway.simulator import SimulatorState, create_simulator_app
from tests.support.harness import Gateway, openai_upstream_env, running_gateway
from tests.support.ledger import memory_app
from tests.support.postgres import create_schema, temporary_database

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

# CPython 3.11 keeps one AST-construction recursion counter per interpreter, not per thread:
# two threads in ast.parse at once (pytest rewriting a lazily imported plugin module in the
# test's thread, while an in-process gateway's thread formats a traceback, whose caret
# anchors 3.11 finds with ast.parse) make one of them raise "SystemError: AST constructor
# recursion depth mismatch". Tests run gateways in threads, so their parses take turns.
_ast_parse_lock = threading.RLock()
_unlocked_ast_parse = ast.parse


@functools.wraps(_unlocked_ast_parse)
def _ast_parse_one_at_a_time(*args: Any, **kwargs: Any) -> Any:
    with _ast_parse_lock:
        return _unlocked_ast_parse(*args, **kwargs)


ast.parse = _ast_parse_one_at_a_time

# freezegun walks every loaded module's attributes when a freeze starts; SDKs with lazy
# module __getattr__ (cohere, mistralai, google-genai, …) then import submodules *while*
# datetime is faked, and their pydantic models fail to build. Their clocks are not under
# test here, so freezegun leaves them alone.
freezegun.configure(
    extend_ignore_list=[
        "cohere",
        "mistralai",
        "google",
        "anthropic",
        "openai",
        "boto3",
        "botocore",
        "pydantic",
        "spacy",
        "presidio_analyzer",
        "polars",
    ]
)
# Gateways started by tests (in-process and as subprocesses) load the PII models on first
# need instead of at start: ~7 s of CPU per process otherwise, for tests that never screen.
# tests/e2e/test_pii.py turns warm-at-start back on where it is what is being tested.
os.environ.setdefault("LEDGERGATE_PII_WARM_AT_START", "0")
logging.getLogger("httpx").setLevel(logging.WARNING)

BACKENDS = ("sqlite", "postgres")


@pytest.fixture(scope="session")
def event_mapper() -> Any:
    """How the store turns a stored event back into a domain event (no store behind it)."""
    return memory_app().mapper


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """One throwaway database for the whole run; each test gets its own schema in it."""
    with temporary_database() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """Environment selecting a fresh, empty store on each backend."""
    if request.param == "sqlite":
        return {"LEDGERGATE_DATA_DIR": str(tmp_path / "data")}
    url = request.getfixturevalue("postgres_database")
    schema = "t_" + secrets.token_hex(6)
    return {
        "LEDGERGATE_DATABASE_URL": create_schema(url, schema),
        "LEDGERGATE_DATA_DIR": str(tmp_path / "data"),
    }


@pytest.fixture
def sqlite_env(tmp_path: Path) -> dict[str, str]:
    return {"LEDGERGATE_DATA_DIR": str(tmp_path / "data")}


@pytest.fixture
def postgres_env(postgres_database: str) -> dict[str, str]:
    schema = "t_" + secrets.token_hex(6)
    return {"LEDGERGATE_DATABASE_URL": create_schema(postgres_database, schema)}


@pytest.fixture
def simulator() -> Iterator[tuple[BackgroundServer, SimulatorState]]:
    state = SimulatorState()
    with BackgroundServer(create_simulator_app(state)) as server:
        yield server, state


def _gateway(env: dict[str, str], upstream_url: str) -> Iterator[Gateway]:
    with running_gateway({**env, **openai_upstream_env(upstream_url)}) as gateway:
        yield gateway


@pytest.fixture
def gateway(
    backend: dict[str, str], simulator: tuple[BackgroundServer, SimulatorState]
) -> Iterator[Gateway]:
    """A gateway on each backend in front of the simulated OpenAI upstream."""
    yield from _gateway(backend, simulator[0].base_url)


@pytest.fixture
def sqlite_gateway(
    sqlite_env: dict[str, str], simulator: tuple[BackgroundServer, SimulatorState]
) -> Iterator[Gateway]:
    yield from _gateway(sqlite_env, simulator[0].base_url)


# The suite runs on pytest-xdist workers (`-n 2 --dist loadgroup`, see .ci/run). Each test
# file is one group, so a file's module-scoped fixtures (a gateway, a broker topic) are built
# once, on one worker. The files that run several `serve` processes on one PostgreSQL share
# one group instead: they run one after another on one worker, so two of them never add up
# their processes' connection pools against the server's max_connections, nor their CPU
# against each other's kill -9 timing.
SEVERAL_PROCESSES = frozenset(
    {
        "tests/e2e/test_cold_start.py",
        "tests/e2e/test_crash_recovery.py",
        "tests/e2e/test_cross_process_freshness.py",
        "tests/e2e/test_money_multiprocess.py",
        "tests/e2e/test_money_scaleout.py",
        "tests/integration/test_projection_worker.py",
        "tests/integration/test_tenancy_admin.py",
        "tests/kafka/test_relay_crash_recovery.py",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(str(config.rootpath))
    for item in items:
        path = Path(str(item.path)).relative_to(root).as_posix()
        group = "several-processes" if path in SEVERAL_PROCESSES else path
        item.add_marker(pytest.mark.xdist_group(group))
