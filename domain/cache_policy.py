"""A project's response-cache policy, set by admin command: the default cache mode (used when
a request sends no `X-LG-Use-Cache`), whether the project's API keys share entries, and the
semantic cache (off by default: agents get stale answers; on with a similarity threshold).

One aggregate per project (its id derived from the project id), so setting the policy never
contends with the project's money (`Account`) or its keys. The event carries the whole policy
after the change (a replay needs no earlier event to know the policy) and no secret: the key a
sharing project's entries are sealed under is derived at run time from the server's secret and
the project id, never stored (gateway/response_cache.py).

Commands and handlers live here too and join the writer's table with
`HANDLERS.update(CACHE_POLICY_HANDLERS)`, as the routing handlers do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.commands import Command, UnitOfWorkLike
from domain.errors import InvalidCommand, UnknownProject
from domain.ids import derived_id
from domain.project import Project

_NAMESPACE = uuid5(NAMESPACE_URL, "https://ledgergate.dev/cache-policy")

# The cache modes (one home: the gateway's header parser imports them).
CACHE_MODE_AUTO, CACHE_MODE_ALWAYS, CACHE_MODE_NEVER = "auto", "always", "never"
CACHE_MODES = (CACHE_MODE_AUTO, CACHE_MODE_ALWAYS, CACHE_MODE_NEVER)
# A similarity threshold is a cosine similarity in (0, 1]; below SEMANTIC_THRESHOLD_MIN a
# "paraphrase" is anything on the same topic, so a lower threshold is refused, not obeyed.
SEMANTIC_THRESHOLD_MIN = Decimal("0.5")
SEMANTIC_THRESHOLD_MAX = Decimal("1")
EMBEDDING_MODEL_CHARS_MAX = 200


def parse_semantic_threshold(raw: object) -> Decimal:
    """A threshold from input (header, CLI, admin API): a decimal in [0.5, 1]; else raises."""
    text = str(raw).strip() if isinstance(raw, str | int | float | Decimal) else ""
    if isinstance(raw, bool) or not text or len(text) > 16:
        raise InvalidCommand(_threshold_message())
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InvalidCommand(_threshold_message()) from None
    if not value.is_finite() or not SEMANTIC_THRESHOLD_MIN <= value <= SEMANTIC_THRESHOLD_MAX:
        raise InvalidCommand(_threshold_message())
    return value


def _threshold_message() -> str:
    return (
        "a semantic cache threshold is a cosine similarity from "
        f"{SEMANTIC_THRESHOLD_MIN} to {SEMANTIC_THRESHOLD_MAX}, for example 0.92"
    )


@dataclass(frozen=True)
class CachePolicy:
    """What the gateway reads: the policy in effect (the default when never set)."""

    default_mode: str = CACHE_MODE_AUTO
    share_across_keys: bool = False
    semantic_threshold: Decimal | None = None  # None: semantic cache off for the project
    semantic_model: str = ""  # "": the router's choice of an embedding model in the tier

    def as_dict(self) -> dict[str, Any]:
        return {
            "default_mode": self.default_mode,
            "share_across_keys": self.share_across_keys,
            "semantic_threshold": None
            if self.semantic_threshold is None
            else str(self.semantic_threshold),
            "semantic_model": self.semantic_model or None,
        }


DEFAULT_POLICY = CachePolicy()


class ProjectCachePolicy(Aggregate):
    """The response-cache policy of one project."""

    class Started(Aggregate.Created):
        project_id: str

    class PolicySet(Aggregate.Event):
        """The whole policy after the change (a replay needs no earlier event)."""

        default_mode: str
        share_across_keys: bool
        semantic_threshold: str  # a Decimal as text; "" = semantic cache off
        semantic_model: str  # "" = the router's choice
        set_by: str

        def apply(self, aggregate: ProjectCachePolicy) -> None:
            aggregate.policy = CachePolicy(
                default_mode=self.default_mode,
                share_across_keys=self.share_across_keys,
                semantic_threshold=Decimal(self.semantic_threshold)
                if self.semantic_threshold
                else None,
                semantic_model=self.semantic_model,
            )
            aggregate.set_by = self.set_by

    @staticmethod
    def create_id(project_id: str) -> UUID:
        return derived_id(_NAMESPACE, f"project-cache-policy:{project_id}")

    @event(Started)
    def __init__(self, project_id: str) -> None:
        self.project_id = project_id
        self.policy = DEFAULT_POLICY
        self.set_by = ""

    def set_policy(self, policy: CachePolicy, *, set_by: str) -> None:
        """Validate, then record the whole policy (the event's apply step sets it)."""
        check_policy(policy)
        self.trigger_event(
            self.PolicySet,
            default_mode=policy.default_mode,
            share_across_keys=policy.share_across_keys,
            semantic_threshold=""
            if policy.semantic_threshold is None
            else str(policy.semantic_threshold),
            semantic_model=policy.semantic_model,
            set_by=set_by,
        )


def check_policy(policy: CachePolicy) -> None:
    if policy.default_mode not in CACHE_MODES:
        raise InvalidCommand(f"default_mode must be one of {', '.join(CACHE_MODES)}")
    if not isinstance(policy.share_across_keys, bool):
        raise InvalidCommand("share_across_keys must be true or false")
    if policy.semantic_threshold is not None:
        parse_semantic_threshold(str(policy.semantic_threshold))
    model = policy.semantic_model
    if (
        not isinstance(model, str)
        or len(model) > EMBEDDING_MODEL_CHARS_MAX
        or (model and not model.isprintable())
    ):
        raise InvalidCommand(
            f"semantic_model must be a model name of at most {EMBEDDING_MODEL_CHARS_MAX} characters"
        )


_KEEP: Any = None  # a field left None in the command keeps the current value


@dataclass(frozen=True)
class SetCachePolicy(Command):
    """Change some of a project's cache policy; a field left None keeps its value.
    `semantic_threshold` "" (or "off") turns the semantic cache off."""

    project_id: UUID
    default_mode: str | None = _KEEP
    share_across_keys: bool | None = _KEEP
    semantic_threshold: str | None = _KEEP
    semantic_model: str | None = _KEEP
    set_by: str = "admin"


def set_cache_policy(cmd: SetCachePolicy, uow: UnitOfWorkLike) -> dict[str, Any]:
    project = uow.find(cmd.project_id)
    if not isinstance(project, Project):
        raise UnknownProject(f"project {cmd.project_id} not found")
    aggregate_id = ProjectCachePolicy.create_id(str(cmd.project_id))
    found = uow.find(aggregate_id)
    current = found.policy if isinstance(found, ProjectCachePolicy) else DEFAULT_POLICY
    threshold = current.semantic_threshold
    if cmd.semantic_threshold is not None:
        raw = cmd.semantic_threshold.strip().lower()
        threshold = None if raw in ("", "off") else parse_semantic_threshold(raw)
    policy = CachePolicy(
        default_mode=current.default_mode
        if cmd.default_mode is None
        else cmd.default_mode.strip().lower(),
        share_across_keys=current.share_across_keys
        if cmd.share_across_keys is None
        else cmd.share_across_keys,
        semantic_threshold=threshold,
        semantic_model=current.semantic_model
        if cmd.semantic_model is None
        else cmd.semantic_model.strip(),
    )
    check_policy(policy)  # before anything is added: a refused command leaves nothing behind
    aggregate = (
        found
        if isinstance(found, ProjectCachePolicy)
        else ProjectCachePolicy(project_id=str(cmd.project_id))
    )
    aggregate.set_policy(policy, set_by=cmd.set_by[:200] or "admin")
    if not isinstance(found, ProjectCachePolicy):
        uow.add(aggregate)
    return {"project_id": str(cmd.project_id), **policy.as_dict()}


def policy_of(aggregate: Any) -> CachePolicy:
    """The policy in effect given the loaded aggregate (or None: never set)."""
    return aggregate.policy if isinstance(aggregate, ProjectCachePolicy) else DEFAULT_POLICY


CACHE_POLICY_HANDLERS: dict[type, Callable[[Any, Any], Any]] = {
    SetCachePolicy: set_cache_policy,
}
