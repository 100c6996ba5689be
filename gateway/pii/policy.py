"""Parse and validate `pii_policy` and resolve it against a project's default PII policy.

A request may carry
    "pii_policy": {"enabled": true, "action": "pseudonymize" | "redact" | "block",
                   "sensitivity": "low" | "medium" | "high", "rehydrate_response": true,
                   "language": "auto" | "en" | "fr" | "de" | "it" | "sv" | "es",   # optional
                   "block_output_entity_types": ["CREDIT_CARD", ...]}               # optional
Anything else (unknown key, wrong type, unknown value) is refused with `InvalidPiiPolicy`
rather than guessed: a typo in a privacy setting must never silently weaken it.

A project may set a default policy (used when the request has none), may `enforce` it
(a request cannot switch screening off), and may add guardrail rules the request cannot
remove: entity types whose presence in the input blocks the request, and entity types whose
appearance in a streamed answer severs the stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, TypeVar

from domain.errors import InvalidPiiPolicy

_E = TypeVar("_E", bound=StrEnum)


class PiiAction(StrEnum):
    PSEUDONYMIZE = "pseudonymize"
    REDACT = "redact"
    BLOCK = "block"


class Sensitivity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


# Languages we have recognizers and context words for. NER models exist for en and fr here;
# the others use pattern recognizers plus the English NER model (see engine.py).
SUPPORTED_LANGUAGES: tuple[str, ...] = ("en", "fr", "de", "it", "sv", "es")
LANGUAGE_AUTO = "auto"

# The EU national identifiers, each validated by its checksum (gateway/pii/checksums.py).
NATIONAL_ID_TYPES: frozenset[str] = frozenset(
    {
        "SE_PERSONNUMMER",
        "SE_SAMORDNINGSNUMMER",
        "DE_TAX_ID",
        "IT_FISCAL_CODE",
        "ES_DNI",
        "ES_NIE",
        "FR_NIR",
    }
)

# Every entity type the screener can report. Used to validate type lists in policies.
KNOWN_ENTITY_TYPES: frozenset[str] = frozenset(
    {
        "PERSON",
        "LOCATION",
        "ORGANIZATION",
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "CREDIT_CARD",
        "IBAN_CODE",
        "IP_ADDRESS",
        "URL",
    }
    | NATIONAL_ID_TYPES
)

# What each sensitivity looks for and how sure a finding must be. Higher sensitivity means
# more entity types and a lower score threshold (more recall, less precision).
_STRONG_IDENTIFIERS = frozenset(
    {
        "PERSON",
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "CREDIT_CARD",
        "IBAN_CODE",
    }
    | NATIONAL_ID_TYPES
)
ENTITY_TYPES_BY_SENSITIVITY: dict[Sensitivity, frozenset[str]] = {
    Sensitivity.LOW: _STRONG_IDENTIFIERS,
    Sensitivity.MEDIUM: _STRONG_IDENTIFIERS | {"LOCATION", "IP_ADDRESS"},
    Sensitivity.HIGH: KNOWN_ENTITY_TYPES,
}
SCORE_THRESHOLD_BY_SENSITIVITY: dict[Sensitivity, float] = {
    Sensitivity.LOW: 0.6,
    Sensitivity.MEDIUM: 0.4,
    Sensitivity.HIGH: 0.25,
}

SOURCE_REQUEST = "request"
SOURCE_PROJECT_DEFAULT = "project_default"

_REQUEST_KEYS = frozenset(
    {
        "enabled",
        "action",
        "sensitivity",
        "rehydrate_response",
        "language",
        "block_output_entity_types",
    }
)


@dataclass(frozen=True, slots=True)
class PiiPolicy:
    """The effective policy for one request, after merging request and project rules."""

    enabled: bool = True
    action: PiiAction = PiiAction.PSEUDONYMIZE
    sensitivity: Sensitivity = Sensitivity.MEDIUM
    rehydrate_response: bool = False
    language: str = LANGUAGE_AUTO
    # Guardrail: any of these in the input refuses the request whatever `action` says.
    blocked_entity_types: frozenset[str] = frozenset()
    # Streaming firewall: any of these in the model's answer severs the stream.
    output_blocked_entity_types: frozenset[str] = frozenset()
    # Whether the request itself carried `pii_policy` (recorded in the audit trail).
    policy_received: bool = False
    source: str = SOURCE_REQUEST

    @property
    def entity_types(self) -> frozenset[str]:
        """What screening looks for: the sensitivity's set plus every guarded type."""
        return (
            ENTITY_TYPES_BY_SENSITIVITY[self.sensitivity]
            | self.blocked_entity_types
            | self.output_blocked_entity_types
        )

    @property
    def score_threshold(self) -> float:
        return SCORE_THRESHOLD_BY_SENSITIVITY[self.sensitivity]

    @property
    def wants_rehydration(self) -> bool:
        return self.enabled and self.action is PiiAction.PSEUDONYMIZE and self.rehydrate_response


@dataclass(frozen=True, slots=True)
class ProjectPiiPolicy:
    """A project's PII settings. `default` applies when a request carries no `pii_policy`;
    `enforced` forbids a request from disabling screening; the two type sets are guardrail
    rules no request can remove."""

    default: PiiPolicy | None = None
    enforced: bool = False
    blocked_entity_types: frozenset[str] = field(default_factory=frozenset)
    output_blocked_entity_types: frozenset[str] = field(default_factory=frozenset)


def parse_pii_policy(raw: object) -> PiiPolicy:
    """Validate the request's `pii_policy` object. Raises InvalidPiiPolicy (never KeyError
    or TypeError) on anything malformed; messages name the field, never echo long input."""
    if not isinstance(raw, Mapping):
        raise InvalidPiiPolicy("pii_policy must be a JSON object", param="pii_policy")
    unknown = sorted(str(key) for key in raw if key not in _REQUEST_KEYS)
    if unknown:
        raise InvalidPiiPolicy(
            f"pii_policy has unknown field(s): {', '.join(k[:40] for k in unknown[:5])}",
            param="pii_policy",
        )
    enabled = _boolean(raw, "enabled", default=True)
    action = _choice(raw, "action", PiiAction, default=PiiAction.PSEUDONYMIZE)
    sensitivity = _choice(raw, "sensitivity", Sensitivity, default=Sensitivity.MEDIUM)
    rehydrate = _boolean(raw, "rehydrate_response", default=False)
    language = raw.get("language", LANGUAGE_AUTO)
    if language is None:
        language = LANGUAGE_AUTO
    if not isinstance(language, str) or (
        language != LANGUAGE_AUTO and language not in SUPPORTED_LANGUAGES
    ):
        raise InvalidPiiPolicy(
            "pii_policy.language must be 'auto' or one of " + ", ".join(SUPPORTED_LANGUAGES),
            param="pii_policy.language",
        )
    output_blocked = entity_type_set(
        raw.get("block_output_entity_types", ()), "pii_policy.block_output_entity_types"
    )
    if rehydrate and action is not PiiAction.PSEUDONYMIZE:
        # Redacted values cannot be restored; asking for it is a client mistake worth naming.
        raise InvalidPiiPolicy(
            "pii_policy.rehydrate_response needs action 'pseudonymize'",
            param="pii_policy.rehydrate_response",
        )
    return PiiPolicy(
        enabled=enabled,
        action=action,
        sensitivity=sensitivity,
        rehydrate_response=rehydrate,
        language=language,
        output_blocked_entity_types=output_blocked,
        policy_received=True,
        source=SOURCE_REQUEST,
    )


def parse_project_pii_policy(raw: Mapping[str, Any] | None) -> ProjectPiiPolicy:
    """Build a project's PII settings from config (TOML/JSON-shaped mapping):
    {"default": {...pii_policy...}, "enforced": bool, "block_entity_types": [...],
     "block_output_entity_types": [...]}."""
    if raw is None:
        return ProjectPiiPolicy()
    if not isinstance(raw, Mapping):
        raise InvalidPiiPolicy("project pii policy must be an object", param="pii")
    unknown = sorted(
        str(k)
        for k in raw
        if k not in {"default", "enforced", "block_entity_types", "block_output_entity_types"}
    )
    if unknown:
        raise InvalidPiiPolicy(
            f"project pii policy has unknown field(s): {', '.join(unknown[:5])}", param="pii"
        )
    default_raw = raw.get("default")
    default = None
    if default_raw is not None:
        default = replace(
            parse_pii_policy(default_raw), policy_received=False, source=SOURCE_PROJECT_DEFAULT
        )
    return ProjectPiiPolicy(
        default=default,
        enforced=_boolean(raw, "enforced", default=False),
        blocked_entity_types=entity_type_set(
            raw.get("block_entity_types", ()), "pii.block_entity_types"
        ),
        output_blocked_entity_types=entity_type_set(
            raw.get("block_output_entity_types", ()), "pii.block_output_entity_types"
        ),
    )


def resolve_policy(
    request_value: object, project: ProjectPiiPolicy | None = None
) -> PiiPolicy | None:
    """The effective policy for a request, or None when nothing asks for screening.

    `request_value` is the body's `pii_policy` (None when absent). Project guardrail rules
    are always added; an enforced project default cannot be switched off by the request.
    """
    project = project or ProjectPiiPolicy()
    if request_value is None:
        policy = project.default
        if policy is None:
            if not (project.blocked_entity_types or project.output_blocked_entity_types):
                return None
            # Guardrail rules alone still need screening: look only, change nothing.
            policy = PiiPolicy(enabled=True, action=PiiAction.REDACT, source=SOURCE_PROJECT_DEFAULT)
            return replace(
                policy,
                blocked_entity_types=project.blocked_entity_types,
                output_blocked_entity_types=project.output_blocked_entity_types,
            )
    else:
        policy = parse_pii_policy(request_value)
        if not policy.enabled and project.enforced and project.default is not None:
            # The request asked for no screening; the project forbids that. Keep the record
            # that a policy was received, but apply the project's.
            policy = replace(project.default, policy_received=True)
    return replace(
        policy,
        blocked_entity_types=policy.blocked_entity_types | project.blocked_entity_types,
        output_blocked_entity_types=policy.output_blocked_entity_types
        | project.output_blocked_entity_types,
    )


def entity_type_set(raw: object, param: str) -> frozenset[str]:
    if raw is None:
        return frozenset()
    if isinstance(raw, str) or not isinstance(raw, list | tuple | set | frozenset):
        raise InvalidPiiPolicy(f"{param} must be a list of entity types", param=param)
    values: set[str] = set()
    for item in raw:
        if not isinstance(item, str) or item.upper() not in KNOWN_ENTITY_TYPES:
            shown = item[:40] if isinstance(item, str) else type(item).__name__
            raise InvalidPiiPolicy(
                f"{param}: unknown entity type {shown!r}; known: "
                + ", ".join(sorted(KNOWN_ENTITY_TYPES)),
                param=param,
            )
        values.add(item.upper())
    return frozenset(values)


def _boolean(raw: Mapping[str, Any], key: str, *, default: bool) -> bool:
    value = raw.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidPiiPolicy(f"pii_policy.{key} must be true or false", param=f"pii_policy.{key}")
    return value


def _choice(raw: Mapping[str, Any], key: str, kind: type[_E], *, default: _E) -> _E:
    value = raw.get(key, default)
    if value is None:
        return default
    try:
        return kind(value)
    except ValueError:
        raise InvalidPiiPolicy(
            f"pii_policy.{key} must be one of " + ", ".join(m.value for m in kind),
            param=f"pii_policy.{key}",
        ) from None
