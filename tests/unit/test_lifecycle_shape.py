"""The request lifecycle keeps one home per settlement: the gateway builds each request
command in exactly one module, so a rule about what a completion or a failure records
cannot drift between chat, streams and embeddings again (issue 10)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from gateway.lifecycle.request import Admission, PiiSession

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"

# command class -> the one gateway module allowed to construct it
ONE_HOME = {
    "CompleteRequest": "gateway/lifecycle/settlement.py",
    "FailRequest": "gateway/lifecycle/settlement.py",
    "AdmitRequest": "gateway/lifecycle/admission.py",
    "RecordRejection": "gateway/lifecycle/admission.py",
}


def _constructions() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {name: set() for name in ONE_HOME}
    for path in GATEWAY.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in found:
                found[name].add(str(path.relative_to(GATEWAY.parent)))
    return found


def test_each_request_command_is_built_in_exactly_one_gateway_module() -> None:
    found = _constructions()
    assert found == {name: {home} for name, home in ONE_HOME.items()}


def test_an_admission_cannot_change_after_it_is_made() -> None:
    fields = {field.name for field in dataclasses.fields(Admission)}
    assert {"facts", "decision", "key_source", "reserved_amount", "currency"} <= fields
    admission = Admission.__new__(Admission)
    with pytest.raises(dataclasses.FrozenInstanceError):
        admission.key_source = "byok"  # type: ignore[misc]
    session = PiiSession.__new__(PiiSession)
    with pytest.raises(dataclasses.FrozenInstanceError):
        session.language = "fr"  # type: ignore[misc]
