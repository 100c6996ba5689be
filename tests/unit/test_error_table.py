"""Every error code the domain, the gateway and the provider adapters can raise is in the one
status table (gateway/errors.py: ERRORS), so no error reaches a client with a status nobody
chose; and the status is decided there, not beside each raise."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import domain
import reconciliation
from domain.errors import DomainError
from gateway.errors import ERRORS, GatewayError, as_gateway_error, error_response, from_domain

GATEWAY_DIR = Path(__file__).resolve().parents[2] / "gateway"
# Where a status is data of another table, not a choice beside a raise: Starlette's 404/405
# (gateway/http/handlers.py), the unsupported endpoints' 404/501 (gateway/http/unsupported.py).
# from_upstream (gateway/errors.py) passes a provider's answer through as the adapter mapped it.
STATUS_OVERRIDE_ALLOWED = {"http/handlers.py", "http/unsupported.py", "errors.py"}


def _domain_error_classes() -> list[type[DomainError]]:
    # The domain's errors, and those that subclass them elsewhere (reconciliation's), so the
    # walk finds the same set alone as in the whole suite.
    for package in (domain, reconciliation):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(module.name)
    found: list[type[DomainError]] = []
    pending = [DomainError]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            found.append(sub)
            pending.append(sub)
    return found


def _call_name(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return None


def _gateway_error_calls() -> list[tuple[str, ast.Call]]:
    """(file, call) for every GatewayError(...) and UpstreamError(...) in gateway/, and every
    super().__init__(...) of a GatewayError subclass."""
    calls: list[tuple[str, ast.Call]] = []
    for path in GATEWAY_DIR.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        relative = str(path.relative_to(GATEWAY_DIR))
        subclass_inits: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(base, ast.Name) and base.id == "GatewayError" for base in node.bases
            ):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Call) and _call_name(inner) == "__init__":
                        subclass_inits.add(id(inner))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            if _call_name(node) in ("GatewayError", "UpstreamError") or id(node) in subclass_inits:
                calls.append((relative, node))
    return calls


def _literal_code(call: ast.Call) -> str | None:
    for keyword in call.keywords:
        if keyword.arg == "code" and isinstance(keyword.value, ast.Constant):
            return str(keyword.value.value)
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def test_every_domain_error_class_has_its_code_in_the_one_table() -> None:
    classes = _domain_error_classes()
    assert len(classes) >= 20  # the walk found the domain's errors, not an empty list
    missing = sorted({cls.code for cls in classes if cls.code not in ERRORS})
    assert missing == [], missing


def test_every_code_the_gateway_and_the_adapters_raise_is_in_the_one_table() -> None:
    codes = {code for _, call in _gateway_error_calls() if (code := _literal_code(call))}
    assert len(codes) >= 30
    missing = sorted(codes - set(ERRORS))
    assert missing == [], missing


def test_no_gateway_error_sets_its_own_status_beside_the_table() -> None:
    inline = sorted(
        f"{file}:{call.lineno} {_literal_code(call)}"
        for file, call in _gateway_error_calls()
        if _call_name(call) != "UpstreamError"  # a provider's answer is passed through
        and file not in STATUS_OVERRIDE_ALLOWED
        and any(k.arg in ("status", "error_type") for k in call.keywords)
    )
    assert inline == [], inline


def test_a_domain_error_answers_the_status_type_and_retry_advice_of_its_table_row() -> None:
    for cls in _domain_error_classes():
        kind = ERRORS[cls.code]
        raised = cls.__new__(cls)  # some take required details; the base's fields suffice
        DomainError.__init__(raised, "refused")
        error = from_domain(raised)
        assert (error.status, error.error_type) == (kind.status, kind.error_type), cls
        response = error_response(as_gateway_error(raised), "lg_req_test")
        assert response.status_code == kind.status
        if not kind.retryable:
            assert response.headers["x-should-retry"] == "false", cls


def test_an_unknown_failure_is_a_500_internal_error_and_a_gateway_error_keeps_its_row() -> None:
    unknown = as_gateway_error(RuntimeError("boom"))
    assert (unknown.code, unknown.status, unknown.error_type) == (
        "internal_error",
        500,
        "api_error",
    )
    quota = GatewayError("quota_exceeded", "monthly quota reached")
    assert (quota.status, quota.error_type) == (429, "rate_limit_error")
    assert error_response(quota, "lg_req_test").headers["x-should-retry"] == "false"
