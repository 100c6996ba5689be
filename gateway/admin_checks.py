"""Checks an admin command needs beyond the domain's own, shared by the admin HTTP API and its
CLI twin so both refuse the same things with the same words.

- `price set` names a model the gateway knows: a shipped catalog model (global price), or
  with a project a custom model of that project (that project's own price book). A typo is
  refused with the closest names instead of becoming a price book nothing ever reads.
- a strict project needs `LEDGERGATE_ACTOR_TOKEN_SECRET`: without it no `X-Actor-Token` can
  be issued or checked, and the project could never serve a request.
"""

from __future__ import annotations

import difflib
from uuid import UUID

from domain.catalog import Catalog
from domain.errors import InvalidCommand
from domain.routing import ProjectRouting

ACTOR_TOKEN_SECRET_ENV = "LEDGERGATE_ACTOR_TOKEN_SECRET"
CLOSE_NAMES_MAX = 5
CLOSE_NAMES_CUTOFF = 0.6


def close_names(name: str, candidates: list[str]) -> list[str]:
    return difflib.get_close_matches(
        name.strip().lower(), candidates, n=CLOSE_NAMES_MAX, cutoff=CLOSE_NAMES_CUTOFF
    )


def price_model(
    shipped: Catalog,
    routing: ProjectRouting | None,
    model: str,
    project_id: UUID | None,
) -> str:
    """The canonical model name a price may be set for, or InvalidCommand (400) naming the
    closest known names. Without a project: shipped models only; with one: that project's
    custom models only (a shipped model's price is global, never per project)."""
    wanted = model.strip().lower()
    custom = routing.custom_models() if routing is not None else ()
    if project_id is None:
        spec = shipped.get(wanted)
        if spec is not None:
            return spec.name
        names = [*shipped.names(), *(alias for s in shipped.models for alias in s.aliases)]
        hint = " (a project's custom model needs the project: --project / project_id)"
    else:
        for spec in custom:
            if wanted == spec.name or wanted in spec.aliases:
                return spec.name
        if shipped.get(wanted) is not None:
            raise InvalidCommand(
                f"{wanted[:80]!r} is a catalog model: its price is global; set it without a "
                "project",
                param="model",
            )
        names = [spec.name for spec in custom]
        hint = " among this project's custom models"
    close = close_names(wanted, names)
    suggestion = f"; did you mean {', '.join(close)}?" if close else ""
    raise InvalidCommand(
        f"unknown model {model.strip()[:80]!r}{hint}{suggestion}",
        param="model",
        close_matches=close,
    )


def check_strict_project(actor_token_secret: str | None, strict: bool) -> None:
    """`actor_token_secret`: the gateway's `Settings.actor_token_secret`."""
    if strict and not (actor_token_secret or "").strip():
        raise InvalidCommand(
            f"a strict project needs {ACTOR_TOKEN_SECRET_ENV} set on the gateway (it signs and "
            "checks the X-Actor-Token every request of a strict project must carry); set it "
            "first, or create the project without strict",
            param="strict",
        )
