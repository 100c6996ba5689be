"""A credential's rules hold across processes (two writers, each with its own cached state, on
one store; SQLite and the real PostgreSQL): a revocation decided by one refuses the other's
very next admission although its cached Account and Credential are stale, and a budget
shared by both is overshot by zero."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from domain import commands as c
from domain.application import open_application
from domain.credentials import IssueCredential, RevokeCredential
from domain.errors import DomainError
from domain.ids import account_id
from domain.limits import limit_status
from domain.writer import GroupCommitWriter
from gateway.credentials import new_jti
from tests.support.ledger import MODEL, admit_command


@pytest.fixture
def two_writers(backend: dict[str, str]) -> Iterator[tuple[GroupCommitWriter, GroupCommitWriter]]:
    apps = [
        open_application(backend.get("LEDGERGATE_DATABASE_URL"), backend["LEDGERGATE_DATA_DIR"])
        for _ in range(2)
    ]
    writers = [GroupCommitWriter(app).start() for app in apps]
    try:
        yield writers[0], writers[1]
    finally:
        for writer, app in zip(writers, apps, strict=True):
            writer.stop()
            app.close()


def _tenant(writer: GroupCommitWriter) -> tuple[UUID, UUID]:
    project_id = UUID(
        writer.execute(c.CreateProject(name="two", currency="USD")).value["project_id"]
    )
    writer.execute(
        c.TopUp(project_id=project_id, amount=Decimal("100"), currency="USD", reference="t")
    )
    key = writer.execute(c.CreateApiKey(project_id=project_id)).value
    writer.execute(
        c.SetPrice(
            model=MODEL,
            input_per_mtok=Decimal("1"),
            output_per_mtok=Decimal("1"),
            currency="USD",
            effective_from=writer.clock.now().replace(year=2020),
        )
    )
    return project_id, UUID(key["key_id"])


def _admit(writer: GroupCommitWriter, project_id: UUID, key_id: UUID, jti: str) -> Any:
    command = admit_command(
        project_id, writer.clock.now(), key_id=key_id, input_tokens=1000, output_tokens=0
    )
    return writer.execute(dataclasses.replace(command, credential_id=jti))


def test_a_revocation_by_one_process_refuses_the_others_next_admission(two_writers) -> None:
    a, b = two_writers
    project_id, key_id = _tenant(a)
    jti = new_jti()
    a.execute(IssueCredential(jti=jti, issuing_key_id=key_id, signing_key_id="k"))
    _admit(b, project_id, key_id, jti)  # B now caches the Account and the Credential
    a.execute(RevokeCredential(jti=jti, project_id=project_id, revoked_by="key:x"))
    with pytest.raises(DomainError) as refused:
        _admit(b, project_id, key_id, jti)
    assert refused.value.code == "credential_revoked"


def test_a_budget_shared_by_two_processes_is_overshot_by_zero(two_writers) -> None:
    a, b = two_writers
    project_id, key_id = _tenant(a)
    jti = new_jti()
    # Each admission reserves 1000 input tokens at 1/Mtok plus the 5% fee: 0.00105.
    a.execute(
        IssueCredential(
            jti=jti, issuing_key_id=key_id, signing_key_id="k", budget=Decimal("0.0050")
        )
    )
    admitted = refused = 0
    for turn in range(10):
        writer = a if turn % 2 == 0 else b
        try:
            _admit(writer, project_id, key_id, jti)
            admitted += 1
        except DomainError as error:
            assert error.code == "credential_budget_exceeded"
            refused += 1
    assert admitted == 4 and refused == 6  # 4 × 0.00105 ≤ 0.005 < 5 × 0.00105
    account = a.app.repository.get(account_id(project_id))
    status = limit_status(account, f"credential:{jti}", a.clock.now())
    assert status is not None and status["pending"] + status["posted"] <= Decimal("0.0050")
