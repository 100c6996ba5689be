from __future__ import annotations

import pytest

from domain.errors import InvalidPiiPolicy
from gateway.pii.policy import (
    PiiAction,
    Sensitivity,
    parse_pii_policy,
    parse_project_pii_policy,
    resolve_policy,
)


def test_an_empty_policy_object_means_pseudonymize_at_medium_sensitivity() -> None:
    policy = parse_pii_policy({})
    assert (policy.enabled, policy.action, policy.sensitivity) == (
        True,
        PiiAction.PSEUDONYMIZE,
        Sensitivity.MEDIUM,
    )
    assert policy.policy_received and not policy.rehydrate_response


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        ("yes", "pii_policy"),
        ({"action": "scramble"}, "pii_policy.action"),
        ({"sensitivity": "extreme"}, "pii_policy.sensitivity"),
        ({"enabled": "true"}, "pii_policy.enabled"),
        ({"rehydrate_response": 1}, "pii_policy.rehydrate_response"),
        ({"language": "xx"}, "pii_policy.language"),
        ({"block_output_entity_types": ["NOT_A_TYPE"]}, "pii_policy.block_output_entity_types"),
        ({"block_output_entity_types": "IBAN_CODE"}, "pii_policy.block_output_entity_types"),
        ({"action": "redact", "rehydrate_response": True}, "pii_policy.rehydrate_response"),
        ({"enable": True}, "pii_policy"),
    ],
)
def test_a_malformed_policy_is_refused_with_invalid_pii_policy_naming_the_field(
    raw: object, param: str
) -> None:
    with pytest.raises(InvalidPiiPolicy) as caught:
        parse_pii_policy(raw)
    assert caught.value.code == "invalid_pii_policy"
    assert caught.value.details["param"] == param


def test_no_request_policy_and_no_project_default_means_no_screening() -> None:
    assert resolve_policy(None, None) is None


def test_the_project_default_applies_when_the_request_has_no_policy() -> None:
    project = parse_project_pii_policy({"default": {"action": "redact", "sensitivity": "high"}})
    policy = resolve_policy(None, project)
    assert policy is not None and policy.action is PiiAction.REDACT
    assert not policy.policy_received and policy.source == "project_default"


def test_project_guardrail_types_are_added_to_any_request_policy() -> None:
    project = parse_project_pii_policy(
        {"block_entity_types": ["credit_card"], "block_output_entity_types": ["IBAN_CODE"]}
    )
    policy = resolve_policy({"action": "pseudonymize"}, project)
    assert policy is not None
    assert policy.blocked_entity_types == {"CREDIT_CARD"}
    assert policy.output_blocked_entity_types == {"IBAN_CODE"}
    assert {"CREDIT_CARD", "IBAN_CODE"} <= policy.entity_types


def test_project_guardrail_rules_alone_turn_screening_on_without_rewriting() -> None:
    project = parse_project_pii_policy({"block_entity_types": ["CREDIT_CARD"]})
    policy = resolve_policy(None, project)
    assert policy is not None and policy.enabled and policy.blocked_entity_types == {"CREDIT_CARD"}


def test_an_enforced_project_default_cannot_be_switched_off_by_the_request() -> None:
    project = parse_project_pii_policy({"default": {"action": "redact"}, "enforced": True})
    policy = resolve_policy({"enabled": False}, project)
    assert policy is not None and policy.enabled and policy.action is PiiAction.REDACT
    assert policy.policy_received


def test_a_request_may_switch_off_a_project_default_that_is_not_enforced() -> None:
    project = parse_project_pii_policy({"default": {"action": "redact"}})
    policy = resolve_policy({"enabled": False}, project)
    assert policy is not None and not policy.enabled


def test_higher_sensitivity_looks_for_more_types_with_a_lower_threshold() -> None:
    low, high = parse_pii_policy({"sensitivity": "low"}), parse_pii_policy({"sensitivity": "high"})
    assert low.entity_types < high.entity_types
    assert low.score_threshold > high.score_threshold
