from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import IllegalTransition
from domain.pii_events import PiiDecision
from domain.request import Request
from tests.support.builders import received_request, request_facts

NOW = datetime(2026, 11, 21, 8, tzinfo=UTC)
DECISION = PiiDecision(
    policy_received=True,
    processed=True,
    action="pseudonymize",
    sensitivity="medium",
    language="sv",
    entity_counts=(("IBAN_CODE", 1), ("PERSON", 2)),
    redactions_applied=3,
    latency_ms=14.25,
)


def _received() -> Request:
    facts = request_facts(
        None,
        at=NOW,
        request_id="lg_req_" + "0" * 24,
        actor_id="alice",
        model="gpt-4o-mini",
        deadline=timedelta(minutes=10),
    )
    return received_request(facts)


def test_a_received_request_records_its_pii_decision_as_counts_and_types() -> None:
    request = _received()
    request.record_pii_decision(DECISION, now=NOW)
    event = request.collect_events()[-1]
    assert isinstance(event, Request.PiiScreened)
    assert event.entity_counts == (("IBAN_CODE", 1), ("PERSON", 2))
    assert event.entities_detected == 3 and event.redactions_applied == 3
    assert DECISION.as_event_fields()["pii_entities_detected"] == 3


def test_a_pii_decision_is_recorded_once_and_only_before_admission_or_rejection() -> None:
    request = _received()
    request.record_pii_decision(DECISION, now=NOW)
    with pytest.raises(IllegalTransition):
        request.record_pii_decision(DECISION, now=NOW)
    rejected = _received()
    rejected.reject(
        http_status=400, error_code="x", error_type="invalid_request_error", message="m", now=NOW
    )
    with pytest.raises(IllegalTransition):
        rejected.record_pii_decision(DECISION, now=NOW)


def test_replaying_the_events_rebuilds_a_request_that_knows_it_was_screened() -> None:
    request = _received()
    request.record_pii_decision(DECISION, now=NOW)
    events = request.collect_events()
    replayed = None
    for stored in events:
        replayed = stored.mutate(replayed)
    assert replayed is not None and replayed.pii_screened
