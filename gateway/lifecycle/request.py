"""The typed pieces of one request, each with its own lifetime.

    Intake     received → admitted | rejected: what the request has shown so far, filled
               step by step by admission; enough to record a rejection at any point.
    PiiSession the screened request's policy and its in-memory value mapping, from
               screening until the request ends (then purged).
    Admission  admitted → completed | failed: the frozen answer of admission (facts,
               route decision, price terms, key source, PII session, cache plan). Nothing
               in it changes after admission.

Per-attempt state (which target is being tried, the attempt number) lives in
`dispatch.Attempts`; the reply headers a request has earned grow in a plain dict the
request kind passes along (chat.py / embeddings.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from uuid import UUID

from domain import commands as c
from domain.credentials import Credential
from domain.ids import MODE_LIVE
from domain.pii_events import PiiDecision
from domain.project import Project
from domain.tiers import EffectiveTier
from gateway.pii.policy import PiiPolicy
from gateway.pii.pseudonymize import Pseudonymizer
from gateway.response_cache import CachePlan
from gateway.routing.decision import RouteDecision

ENDPOINT_CHAT = "chat.completions"
ENDPOINT_EMBEDDINGS = "embeddings"


def elapsed_ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


@dataclass(frozen=True)
class PiiSession:
    """A screened request's policy and value mapping (purged when the request ends)."""

    policy: PiiPolicy
    mapping: Pseudonymizer | None
    language: str = "en"

    def purge(self) -> None:
        if self.mapping is not None:
            self.mapping.purge()


@dataclass
class Intake:
    """What one request has shown so far, from receipt until admission or rejection."""

    request_id: str
    started: float
    received_at: datetime
    project_id: UUID | None = None
    key_id: UUID | None = None
    actor_id: str | None = None
    model_requested: str | None = None
    stream: bool = False
    message_count: int = 0
    prompt_chars: int = 0
    prompt_sha256: str | None = None
    trace_id: str | None = None
    trace_join: c.TraceJoin | None = None  # the governed trace it joins (lifecycle/traces)
    conversation_id: str | None = None
    client_ip: str | None = None
    idempotency_key_sha256: str | None = None
    mode: str = MODE_LIVE  # "test" for an lg_test_ key: simulated, on the test balance
    admitted: bool = False
    # The PII decision to record (admitted or rejected), and the session once screened.
    pii_decision: PiiDecision | None = None
    pii: PiiSession | None = None
    # The temporary credential the request presented (gateway/credentials.py), if any: its
    # grant narrows routing, it may fix the actor, and the writer decides its rules again.
    credential: Credential | None = None

    @property
    def credential_id(self) -> str | None:
        return None if self.credential is None else self.credential.jti

    def facts(self, endpoint: str, timeout_s: float) -> c.RequestFacts:
        return c.RequestFacts(
            request_id=self.request_id,
            endpoint=endpoint,
            project_id=self.project_id,
            key_id=self.key_id,
            actor_id=self.actor_id,
            model_requested=self.model_requested,
            stream=self.stream,
            message_count=self.message_count,
            prompt_chars=self.prompt_chars,
            prompt_sha256=self.prompt_sha256,
            trace_id=self.trace_id,
            idempotency_key_sha256=self.idempotency_key_sha256,
            client_ip=self.client_ip,
            received_at=self.received_at,
            deadline_at=self.received_at + timedelta(seconds=timeout_s),
            mode=self.mode,
            conversation_id=self.conversation_id,
        )

    def purge_pii(self) -> None:
        if self.pii is not None:
            self.pii.purge()


@dataclass(frozen=True)
class Admission:
    """An admitted request: durable (received, reserved, dispatched) before any provider call."""

    facts: c.RequestFacts
    started: float
    project: Project  # the caller's Project aggregate
    key_source: str  # domain.vocabulary.KeySource: BYOK (own key, fee 0%) or MANAGED
    decision: RouteDecision
    effective: EffectiveTier  # the tier the router decided under
    reserved_amount: Decimal
    currency: str
    pii: PiiSession | None = None
    cache_plan: CachePlan | None = None  # mutable by design: the cache fills in its hit
    headers: dict[str, str] = field(default_factory=dict)  # the route and price headers

    @property
    def request_id(self) -> str:
        return self.facts.request_id

    @property
    def mode(self) -> str:
        return self.facts.mode

    @property
    def actor_id(self) -> str | None:
        return self.facts.actor_id

    @property
    def received_at(self) -> datetime:
        return self.facts.received_at

    def elapsed_ms(self) -> int:
        return elapsed_ms_since(self.started)

    def purge_pii(self) -> None:
        if self.pii is not None:
            self.pii.purge()
