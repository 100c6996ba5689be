"""The PII decision recorded for every request that carries (or inherits) a PII policy.

Primitives only — counts and entity *types*, never a value — so it can be stored in the
event log, shown by the audit API and logged without leaking what screening protects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class PiiDecision:
    policy_received: bool  # the request itself carried `pii_policy`
    processed: bool  # screening ran to completion
    action: str  # "pseudonymize" | "redact" | "block" | "none"
    sensitivity: str  # "low" | "medium" | "high"
    language: str  # the language screening used ("" when not processed)
    entity_counts: tuple[tuple[str, int], ...]  # (type, count), sorted by type
    redactions_applied: int  # spans replaced in what the provider sees
    latency_ms: float
    policy_source: str = "request"  # "request" | "project_default"
    blocked: bool = False  # a guardrail refused the request
    blocked_entity_types: tuple[str, ...] = ()
    failure_code: str = ""  # e.g. "pii_screening_unavailable" when screening could not run

    @property
    def entities_detected(self) -> int:
        return sum(count for _, count in self.entity_counts)

    def as_event_fields(self) -> dict[str, Any]:
        """Keyword arguments for the Request aggregate's PII decision event."""
        return {
            "pii_policy_received": self.policy_received,
            "pii_processed": self.processed,
            "pii_action": self.action,
            "pii_sensitivity": self.sensitivity,
            "pii_language": self.language,
            "pii_entity_counts": tuple(tuple(pair) for pair in self.entity_counts),
            "pii_entities_detected": self.entities_detected,
            "pii_redactions_applied": self.redactions_applied,
            "pii_latency_ms": self.latency_ms,
            "pii_policy_source": self.policy_source,
            "pii_blocked": self.blocked,
            "pii_blocked_entity_types": self.blocked_entity_types,
            "pii_failure_code": self.failure_code,
        }
