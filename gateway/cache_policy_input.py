"""Admin input → the cache-policy command, shared by the CLI (`ledgergate cache policy`) and
the admin API (`POST /v1/admin/projects/{id}/cache-policy`), so both accept and refuse the
same things with the same messages."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from uuid import UUID

from domain.cache_policy import CACHE_MODES, SetCachePolicy
from domain.errors import InvalidCommand
from gateway.byok import SecretKeyMissing

POLICY_FIELDS = ("default_mode", "share_across_keys", "semantic_threshold", "semantic_model")


def cache_policy_command(
    project_id: UUID,
    fields: Mapping[str, Any],
    *,
    sharing_available: bool,
    set_by: str = "admin",
) -> SetCachePolicy:
    """The command for the given fields (absent or None: unchanged). Turning sharing on needs
    the server's secret (the project's sharing secret is derived from it)."""
    unknown = sorted(set(fields) - set(POLICY_FIELDS) - {"set_by"})
    if unknown:
        raise InvalidCommand(
            f"unknown cache policy field {unknown[0]!r}; fields: {', '.join(POLICY_FIELDS)}",
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
        project_id=project_id,
        default_mode=mode,
        share_across_keys=share,
        semantic_threshold=None if threshold is None else str(threshold),
        semantic_model=model,
        set_by=str(who)[:200] if who else set_by,
    )
