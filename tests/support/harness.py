"""A running gateway over real HTTP, in front of a local fake upstream, for end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import httpx

from domain import commands as c
from gateway.bootstrap import Services, build_services
from gateway.config import Settings
from gateway.http.app import create_app
from gateway.serving import BackgroundServer
from tests.support.builders import initial_top_up

ADMIN_TOKEN = "lg_admin_test_token"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class Tenant:
    project_id: UUID
    api_key: str
    key_id: UUID
    currency: str

    def headers(self, user: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "X-User-Id": user}


@dataclass
class Gateway:
    server: BackgroundServer
    services: Services
    settings: Settings
    tenants: list[Tenant] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def execute(self, command: c.Command) -> Any:
        return self.services.writer.execute(command).value

    def set_price(
        self,
        model: str,
        input_per_mtok: str,
        output_per_mtok: str,
        currency: str = "USD",
        **kwargs: Any,
    ) -> str:
        result = self.execute(
            c.SetPrice(
                model=model,
                input_per_mtok=Decimal(input_per_mtok),
                output_per_mtok=Decimal(output_per_mtok),
                currency=currency,
                effective_from=kwargs.pop("effective_from", datetime.now(UTC) - timedelta(days=1)),
                **kwargs,
            )
        )
        return str(result["price_id"])

    def tenant(
        self,
        balance: str | None = "10.00",
        currency: str = "USD",
        daily_budget: str | None = None,
        **project: Any,
    ) -> Tenant:
        created = self.execute(
            c.CreateProject(name=project.pop("name", "test project"), currency=currency, **project)
        )
        project_id = UUID(created["project_id"])
        key = self.execute(
            c.CreateApiKey(
                project_id=project_id,
                daily_budget=None if daily_budget is None else Decimal(daily_budget),
            )
        )
        if balance is not None:
            self.execute(initial_top_up(project_id, balance, currency))
        tenant = Tenant(project_id, key["api_key"], UUID(key["key_id"]), currency)
        self.tenants.append(tenant)
        return tenant

    def settle(self) -> None:
        """Wait until the read models have applied everything written so far."""
        self.services.runner.wait_for(self.services.writer.last_position, 10.0)

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=kwargs.pop("timeout", 30.0), **kwargs)

    def admin_post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """POST `body` to the admin API at `path` with the admin token."""
        with self.client() as http:
            return http.post(path, json=body, headers=ADMIN_HEADERS)

    def store_provider_key(
        self, tenant: Tenant, api_key: str, provider: str = "openai"
    ) -> httpx.Response:
        """Store `api_key` as the project's own `provider` key (BYOK); the answer is the
        caller's to check (without a server secret it is a 503)."""
        return self.admin_post(
            f"/v1/admin/projects/{tenant.project_id}/provider-keys",
            {"provider": provider, "api_key": api_key},
        )

    def add_own_endpoint(
        self, tenant: Tenant, base_url: str, models: list[str], name: str = "onprem", **extra: Any
    ) -> httpx.Response:
        """Register the project's own OpenAI-format endpoint `name` at `base_url` + "/v1"
        serving `models` (`extra`: more fields, e.g. api_key_ref); it must be accepted."""
        response = self.admin_post(
            f"/v1/admin/projects/{tenant.project_id}/endpoints",
            {"provider": "openai", "name": name, "base_url": base_url + "/v1", "models": models,
             **extra},
        )  # fmt: skip
        assert response.status_code == 200, response.text
        return response

    def add_own_model(self, tenant: Tenant, model: dict[str, Any]) -> None:
        """Add `model` (a `custom_model` body) to the project's own catalog; it must be
        accepted."""
        added = self.admin_post(f"/v1/admin/projects/{tenant.project_id}/models", model)
        assert added.status_code == 200, added.text

    def openai(self, tenant: Tenant, user: str = "alice", **kwargs: Any) -> Any:
        import openai

        return openai.OpenAI(
            base_url=self.base_url + "/v1",
            api_key=tenant.api_key,
            default_headers={"X-User-Id": user},
            max_retries=kwargs.pop("max_retries", 0),
            timeout=kwargs.pop("timeout", 30.0),
            **kwargs,
        )


def start_gateway(env: dict[str, str]) -> Gateway:
    settings = Settings.from_env(
        {
            "LEDGERGATE_ADMIN_TOKEN": ADMIN_TOKEN,
            # PII models load on first need in tests (see tests/conftest.py).
            "LEDGERGATE_PII_WARM_AT_START": "0",
            **env,
        }
    )
    services = build_services(settings)
    server = BackgroundServer(create_app(settings, services)).start()
    return Gateway(server=server, services=services, settings=settings)


def openai_upstream_env(base_url: str) -> dict[str, str]:
    """The settings that put the OpenAI-format upstream served at `base_url` behind the
    gateway's OpenAI provider (with a test key)."""
    return {"LEDGERGATE_OPENAI_BASE_URL": base_url + "/v1", "LEDGERGATE_OPENAI_API_KEY": "sk-test"}


GPT_4O_MINI_PRICE = ("gpt-4o-mini", "0.15", "0.60")


@contextmanager
def running_gateway(
    env: dict[str, str], prices: Iterable[tuple[str, str, str]] = (GPT_4O_MINI_PRICE,)
) -> Iterator[Gateway]:
    """A gateway on `env` with each (model, input, output) of `prices` priced in USD per
    million tokens (by default gpt-4o-mini at 0.15 / 0.60), stopped on leaving the block."""
    gateway = start_gateway(env)
    try:
        for model, input_per_mtok, output_per_mtok in prices:
            gateway.set_price(model, input_per_mtok, output_per_mtok)
        yield gateway
    finally:
        gateway.server.stop()


@contextmanager
def simulated_gateway(env: dict[str, str], state: Any = None) -> Iterator[Gateway]:
    """`running_gateway` on `env` whose OpenAI-format upstream is the built-in simulator
    (driven by `state`, a SimulatorState, when given)."""
    from gateway.simulator import SimulatorState, create_simulator_app

    with BackgroundServer(create_simulator_app(state or SimulatorState())) as upstream:
        with running_gateway({**env, **openai_upstream_env(upstream.base_url)}) as gateway:
            yield gateway


def custom_model(
    name: str,
    input_price: str = "1.00",
    output_price: str = "2.00",
    effective_from: str = "2026-01-01T00:00:00Z",
) -> dict:
    """A project's custom chat model on OpenAI's gpt-4o-mini (small, US, unrestricted), priced
    in USD per million tokens from `effective_from`: the body of the admin custom-model API."""
    return {
        "name": name,
        "provider": "openai",
        "upstream_id": "gpt-4o-mini",
        "capabilities": ["chat"],
        "size_class": "small",
        "regions": ["us"],
        "tiers": ["unrestricted"],
        "prices": [
            {"effective_from": effective_from, "currency": "USD",
             "input_per_million": input_price, "output_per_million": output_price}
        ],
    }  # fmt: skip
