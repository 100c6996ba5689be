"""Admin input → domain commands: the one place that turns what an operator typed (a CLI
argument list or a `/v1/admin/*` JSON body) into the command the writer executes.

Both entry points hand a mapping of field → value to the builder of the same name: the
admin HTTP API passes its parsed JSON body, `ledgergate` passes its parsed arguments (already
typed by argparse). So a default (tier, plan, fee rate, revoke reason), a conversion (UUID,
Decimal, instant) and a check beyond the domain's own (a strict project needs the actor-token
secret, a price names a known model) is written once here and the two twins cannot drift.

A missing or malformed field is a client mistake: `admin_input_error` turns the KeyError,
TypeError or ValueError a builder raises into the 400 `invalid_request` both twins answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from domain import commands as c
from domain.cache_policy import CACHE_MODES, SetCachePolicy
from domain.catalog import Catalog
from domain.clock import parse_instant
from domain.cost_control import SetKeyDowngradeThreshold
from domain.errors import InvalidCommand
from domain.money import to_decimal
from domain.routing import ProjectRouting
from domain.routing_handlers import AddCustomEndpoint, AddCustomModel
from domain.settlement import DEFAULT_FEE_RATE
from domain.vocabulary import Plan, Tier
from gateway.admin_checks import check_strict_project, price_model
from gateway.byok import SecretKeyMissing, set_provider_key_command
from gateway.config import Settings
from gateway.errors import GatewayError

AdminInput = Mapping[str, Any]

# The defaults an operator may leave out (the CLI's argparse defaults say the same).
DEFAULT_TIER = Tier.UNRESTRICTED.value
DEFAULT_PLAN = Plan.PRO.value
DEFAULT_CURRENCY = "USD"
DEFAULT_REVOKE_REASON = "revoked by admin"
DEFAULT_ADDED_BY = "admin"
ERROR_MESSAGE_CHARS_MAX = 200


def admin_input_error(error: Exception) -> GatewayError:
    """The 400 a builder's KeyError / TypeError / ValueError becomes (a missing or bad field)."""
    if isinstance(error, KeyError | TypeError):
        return GatewayError("invalid_request", f"missing or invalid field: {error}")
    return GatewayError("invalid_request", str(error)[:ERROR_MESSAGE_CHARS_MAX])


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def _optional_uuid(value: Any) -> UUID | None:
    return None if value is None else _uuid(value)


def _instant(value: Any) -> datetime:
    return value if isinstance(value, datetime) else parse_instant(str(value))


def create_project(actor_token_secret: str | None, body: AdminInput) -> c.CreateProject:
    strict = bool(body.get("strict", False))
    check_strict_project(actor_token_secret, strict)
    return c.CreateProject(
        name=str(body["name"]),
        tier=str(body.get("tier", DEFAULT_TIER)),
        plan=str(body.get("plan", DEFAULT_PLAN)),
        currency=str(body.get("currency", DEFAULT_CURRENCY)),
        fee_rate=to_decimal(body.get("fee_rate", DEFAULT_FEE_RATE)),
        strict=strict,
    )


def create_key(body: AdminInput) -> c.CreateApiKey:
    budget = body.get("daily_budget")
    return c.CreateApiKey(
        project_id=_uuid(body["project_id"]),
        daily_budget=None if budget is None else to_decimal(budget),
        test=bool(body.get("test", False)),
    )


def revoke_key(key_id: Any, body: AdminInput) -> c.RevokeApiKey:
    return c.RevokeApiKey(
        key_id=_uuid(key_id), reason=str(body.get("reason", DEFAULT_REVOKE_REASON))
    )


def set_key_downgrade_threshold(key_id: Any, body: AdminInput) -> SetKeyDowngradeThreshold:
    """`threshold` (required; null clears it): below this much left of the key's daily
    budget, its router-chosen requests are served by the cheapest compliant model."""
    raw = body["threshold"]
    threshold = None if raw is None else raw if isinstance(raw, Decimal) else to_decimal(raw)
    return SetKeyDowngradeThreshold(key_id=_uuid(key_id), threshold=threshold)


def top_up(body: AdminInput) -> c.TopUp:
    return c.TopUp(
        project_id=_uuid(body["project_id"]),
        amount=to_decimal(body["amount"]),
        currency=str(body["currency"]),
        reference=str(body["reference"]),
        test=body.get("test") is True,
    )


def set_price(catalog: Catalog, routing: ProjectRouting | None, body: AdminInput) -> c.SetPrice:
    """`routing` is the project's custom models (None without a project): the caller reads
    it from wherever it keeps aggregates (the HTTP cache, the CLI's repository)."""
    project_id = _optional_uuid(body.get("project_id"))
    cached = body.get("cached_input_per_mtok")
    return c.SetPrice(
        model=price_model(catalog, routing, str(body["model"]), project_id),
        project_id=project_id,
        input_per_mtok=to_decimal(body["input_per_mtok"]),
        output_per_mtok=to_decimal(body["output_per_mtok"]),
        cached_input_per_mtok=None if cached is None else to_decimal(cached),
        currency=str(body.get("currency", DEFAULT_CURRENCY)),
        effective_from=_instant(body["effective_from"]),
    )


def price_project_id(body: AdminInput) -> UUID | None:
    """The project whose custom models `set_price` needs, if the price names one."""
    return _optional_uuid(body.get("project_id"))


def add_custom_model(project_id: Any, body: AdminInput) -> AddCustomModel:
    """`body` is the models.toml entry itself (name, provider, upstream_id, tiers, prices…)."""
    return AddCustomModel(
        project_id=_uuid(project_id),
        entry=body,
        added_by=str(body.get("added_by", DEFAULT_ADDED_BY)),
    )


def add_custom_endpoint(project_id: Any, body: AdminInput) -> AddCustomEndpoint:
    models = body.get("models") or ()
    if isinstance(models, str):  # the CLI's comma-separated allow-list
        models = [m for m in models.split(",")]
    return AddCustomEndpoint(
        project_id=_uuid(project_id),
        provider=str(body["provider"]),
        name=str(body["name"]),
        base_url=str(body["base_url"]),
        region=str(body.get("region") or ""),
        api_key_ref=str(body.get("api_key_ref") or ""),
        models=tuple(str(m).strip() for m in models if str(m).strip()),
        added_by=str(body.get("added_by", DEFAULT_ADDED_BY)),
    )


def set_fx_rate(body: AdminInput) -> c.SetFxRate:
    return c.SetFxRate(
        base=str(body["base"]),
        quote=str(body["quote"]),
        rate=to_decimal(body["rate"]),
        effective_from=_instant(body["effective_from"]),
    )


def set_plan(project_id: Any, body: AdminInput) -> c.SetPlan:
    return c.SetPlan(project_id=_uuid(project_id), plan=str(body["plan"]))


def set_tier(project_id: Any, body: AdminInput) -> c.SetTier:
    return c.SetTier(project_id=_uuid(project_id), tier=str(body["tier"]))


def set_fee_rate(project_id: Any, body: AdminInput) -> c.SetFeeRate:
    return c.SetFeeRate(project_id=_uuid(project_id), fee_rate=to_decimal(body["fee_rate"]))


def set_provider_key(settings: Settings, project_id: Any, body: AdminInput) -> c.SetProviderKey:
    # The api_key is encrypted before a command exists; it is never echoed.
    return set_provider_key_command(
        settings, _uuid(project_id), str(body["provider"]), str(body["api_key"])
    )


def remove_provider_key(project_id: Any, body: AdminInput) -> c.RemoveProviderKey:
    return c.RemoveProviderKey(project_id=_uuid(project_id), provider=str(body["provider"]))


CACHE_POLICY_FIELDS = ("default_mode", "share_across_keys", "semantic_threshold", "semantic_model")


def set_cache_policy(
    project_id: Any,
    fields: Mapping[str, Any],
    *,
    sharing_available: bool,
    set_by: str = "admin",
) -> SetCachePolicy:
    """A project's response-cache policy (`ledgergate cache policy`, `POST
    /v1/admin/projects/{id}/cache-policy`): the given fields (absent or None: unchanged).
    Turning sharing on needs the server's secret (the project's sharing secret derives from
    it)."""
    unknown = sorted(set(fields) - set(CACHE_POLICY_FIELDS) - {"set_by"})
    if unknown:
        raise InvalidCommand(
            f"unknown cache policy field {unknown[0]!r}; fields: {', '.join(CACHE_POLICY_FIELDS)}",
            param=unknown[0],
        )
    mode = fields.get("default_mode")
    if mode is not None and (not isinstance(mode, str) or mode.strip().lower() not in CACHE_MODES):
        raise InvalidCommand(
            f"default_mode must be one of {', '.join(CACHE_MODES)}", param="default_mode"
        )
    share = fields.get("share_across_keys")
    if share is not None and not isinstance(share, bool):
        raise InvalidCommand("share_across_keys must be true or false", param="share_across_keys")
    if share is True and not sharing_available:
        raise SecretKeyMissing()
    threshold = fields.get("semantic_threshold")
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, str | int | float | Decimal)
    ):
        raise InvalidCommand(
            'semantic_threshold must be a number from 0.5 to 1, or "off"',
            param="semantic_threshold",
        )
    model = fields.get("semantic_model")
    if model is not None and not isinstance(model, str):
        raise InvalidCommand("semantic_model must be a model name", param="semantic_model")
    who = fields.get("set_by", set_by)
    return SetCachePolicy(
        project_id=_uuid(project_id),
        default_mode=mode,
        share_across_keys=share,
        semantic_threshold=None if threshold is None else str(threshold),
        semantic_model=model,
        set_by=str(who)[:200] if who else set_by,
    )


__all__ = [
    "AdminInput",
    "add_custom_endpoint",
    "add_custom_model",
    "admin_input_error",
    "create_key",
    "create_project",
    "price_project_id",
    "remove_provider_key",
    "revoke_key",
    "set_cache_policy",
    "set_fee_rate",
    "set_fx_rate",
    "set_plan",
    "set_price",
    "set_provider_key",
    "set_tier",
    "top_up",
]
