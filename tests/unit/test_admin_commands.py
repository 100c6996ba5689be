"""The admin CLI and the admin HTTP API build the same command from the same input: both go
through gateway/admin_commands.py, so a default or a conversion cannot drift between them."""

from __future__ import annotations

from uuid import uuid4

import pytest

from domain.catalog import Catalog
from gateway import admin_commands
from gateway.cli import ADMIN_BUILDERS, PROJECT_SETTERS, build_parser
from gateway.config import Settings
from gateway.errors import GatewayError

SETTINGS = Settings.from_env({})
PROJECT = str(uuid4())


def _cli(argv: list[str]) -> object:
    args = build_parser().parse_args(argv)
    if args.command == "project" and args.action != "create":
        return PROJECT_SETTERS[args.action](args.project, vars(args))
    return ADMIN_BUILDERS[args.command](SETTINGS, args)


@pytest.mark.parametrize(
    ("argv", "http_command"),
    [
        (
            ["project", "create", "--name", "acme"],
            lambda: admin_commands.create_project(None, {"name": "acme"}),
        ),
        (
            ["key", "create", "--project", PROJECT, "--daily-budget", "12.50"],
            lambda: admin_commands.create_key({"project_id": PROJECT, "daily_budget": "12.50"}),
        ),
        (
            ["key", "revoke", "--key", PROJECT],
            lambda: admin_commands.revoke_key(PROJECT, {}),
        ),
        (
            ["key", "set-downgrade", "--key", PROJECT, "--threshold", "1.50"],
            lambda: admin_commands.set_key_downgrade_threshold(PROJECT, {"threshold": "1.50"}),
        ),
        (
            ["key", "set-downgrade", "--key", PROJECT, "--clear"],
            lambda: admin_commands.set_key_downgrade_threshold(PROJECT, {"threshold": None}),
        ),
        (
            ["topup", "--project", PROJECT, "--amount", "100", "--currency", "EUR"]
            + ["--reference", "inv-1"],
            lambda: admin_commands.top_up(
                {"project_id": PROJECT, "amount": "100", "currency": "EUR", "reference": "inv-1"}
            ),
        ),
        (
            ["price", "set", "--model", "gpt-4o-mini", "--input-per-mtok", "0.15"]
            + ["--output-per-mtok", "0.60", "--effective-from", "2026-01-01T00:00:00Z"],
            lambda: admin_commands.set_price(
                Catalog.shipped(),
                None,
                {
                    "model": "gpt-4o-mini",
                    "input_per_mtok": "0.15",
                    "output_per_mtok": "0.60",
                    "effective_from": "2026-01-01T00:00:00Z",
                },
            ),
        ),
        (
            ["fx", "set", "--base", "USD", "--quote", "EUR", "--rate", "0.92"]
            + ["--effective-from", "2026-01-01T00:00:00+00:00"],
            lambda: admin_commands.set_fx_rate(
                {
                    "base": "USD",
                    "quote": "EUR",
                    "rate": "0.92",
                    "effective_from": "2026-01-01T00:00:00+00:00",
                }
            ),
        ),
        (
            ["model", "endpoint", "--project", PROJECT, "--provider", "openai", "--name", "eu"]
            + ["--base-url", "https://eu.example/v1", "--models", "gpt-4o-mini, gpt-4o"],
            lambda: admin_commands.add_custom_endpoint(
                PROJECT,
                {
                    "provider": "openai",
                    "name": "eu",
                    "base_url": "https://eu.example/v1",
                    "models": ["gpt-4o-mini", "gpt-4o"],
                },
            ),
        ),
        (
            ["project", "set-fee", "--project", PROJECT, "--fee-rate", "0.03"],
            lambda: admin_commands.set_fee_rate(PROJECT, {"fee_rate": "0.03"}),
        ),
        (
            ["project", "set-plan", "--project", PROJECT, "--plan", "enterprise"],
            lambda: admin_commands.set_plan(PROJECT, {"plan": "enterprise"}),
        ),
    ],
)
def test_the_cli_and_the_http_body_build_the_same_command(argv, http_command) -> None:
    assert _cli(argv) == http_command()


def test_the_defaults_an_operator_leaves_out_are_the_same_on_both_twins() -> None:
    command = admin_commands.create_project(None, {"name": "acme"})
    assert (command.tier, command.plan, command.currency, str(command.fee_rate)) == (
        "unrestricted",
        "pro",
        "USD",
        "0.05",
    )


@pytest.mark.parametrize(
    ("build", "body", "message"),
    [
        (admin_commands.top_up, {"amount": "1"}, "missing or invalid field: 'project_id'"),
        (admin_commands.create_key, {"project_id": "not-a-uuid"}, "badly formed"),
    ],
)
def test_a_missing_or_malformed_field_is_a_400_invalid_request(build, body, message) -> None:
    with pytest.raises((KeyError, TypeError, ValueError)) as caught:
        build(body)
    error = admin_commands.admin_input_error(caught.value)
    assert isinstance(error, GatewayError)
    assert (error.code, error.status) == ("invalid_request", 400)
    assert message in error.message
