"""What the chat route puts between an upstream stream and the client when PII is on:
the output firewall (on the model's raw text) and then the rehydrator (placeholders back to
real values). Each step holds back only a bounded tail, so text flows as it arrives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.pii.engine import PiiScreener
from gateway.pii.firewall import FirewallViolation, StreamFirewall
from gateway.pii.policy import PiiPolicy
from gateway.pii.pseudonymize import Pseudonymizer
from gateway.pii.rehydrate import StreamRehydrator


@dataclass(frozen=True, slots=True)
class StreamStep:
    text: str  # send this to the client now (may be "")
    violation: FirewallViolation | None = None


class PiiStreamFilter:
    def __init__(
        self,
        screener: PiiScreener,
        policy: PiiPolicy,
        mapping: Pseudonymizer,
        *,
        language: str = "en",
        escape: Callable[[str], str] | None = None,
    ) -> None:
        self._screener = screener
        self._firewall = (
            StreamFirewall(screener, policy.output_blocked_entity_types, language=language)
            if policy.enabled and policy.output_blocked_entity_types
            else None
        )
        # `escape` (json_string_escape) when the stream is tool-call arguments, i.e. JSON text.
        self._rehydrator = (
            StreamRehydrator(mapping, escape=escape) if policy.wants_rehydration else None
        )

    @property
    def active(self) -> bool:
        return self._firewall is not None or self._rehydrator is not None

    async def feed(self, text: str) -> StreamStep:
        released = text
        if self._firewall is not None:
            step = await self._screener.run_for_stream(self._firewall.feed, text)
            if step.violation is not None:
                return StreamStep("", step.violation)
            released = step.released
        if self._rehydrator is not None:
            released = self._rehydrator.feed(released)
        return StreamStep(released)

    async def flush(self) -> StreamStep:
        """Call before forwarding the chunk that carries `finish_reason`, and at the end."""
        released = ""
        if self._firewall is not None:
            step = await self._screener.run_for_stream(self._firewall.flush)
            if step.violation is not None:
                return StreamStep("", step.violation)
            released = step.released
        if self._rehydrator is not None:
            released = self._rehydrator.feed(released) + self._rehydrator.flush()
        return StreamStep(released)
