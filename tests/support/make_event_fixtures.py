"""Writes one stored-JSON fixture per event class and version (as the store keeps it) into
tests/fixtures/events/<Aggregate>_<Event>_v<N>.json. Run it when an event class gains a new
version: it writes the fixture of each current version that has none yet and never touches
a released one, whose fixture must keep decoding (tests/unit/test_event_fixtures.py).

    .venv/bin/python -m tests.support.make_event_fixtures
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

from domain import commands as c
from domain.application import LedgerApplication, open_application
from domain.pii_events import PiiDecision
from domain.writer import run_now
from tests.support.builders import admit_request, request_facts, unit_price
from tests.support.ledger import EVENT_FIXTURES, event_fixture_name

OUT = EVENT_FIXTURES
FIXTURE_NOW = datetime(2026, 11, 21, 12, tzinfo=UTC)


@contextmanager
def fixture_ledger() -> Iterator[tuple[LedgerApplication, UUID]]:
    """A fresh embedded ledger in a temporary folder with one EUR project named "fixture"
    (its id yielded with it), closed on leaving the block."""
    with tempfile.TemporaryDirectory() as tmp:
        app = open_application(None, tmp)
        try:
            project_id = UUID(
                run_now(app, c.CreateProject(name="fixture", currency="EUR")).value["project_id"]
            )
            yield app, project_id
        finally:
            app.close()


def write_new_fixtures(
    app: LedgerApplication, out: Path, topics: tuple[str, ...] = ("",)
) -> list[str]:
    """Write into `out` the fixture of each event class and version `app` stored whose topic
    starts with one of `topics`, where `out` has none yet (a released version's fixture is
    never rewritten); the names of the files written."""
    out.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    written: list[str] = []
    for notification in app.recorder.select_notifications(start=1, limit=10_000):
        if notification.topic in seen or not notification.topic.startswith(topics):
            continue
        seen.add(notification.topic)
        state = json.loads(notification.state)
        version = int(state.get("class_version", 1))
        name = event_fixture_name(notification.topic.split(":")[1], version)
        if (out / name).exists():
            continue
        fixture = {"topic": notification.topic, "state": state}
        (out / name).write_text(json.dumps(fixture, indent=2, sort_keys=True) + "\n")
        written.append(name)
    return written


def main() -> None:
    with fixture_ledger() as (app, project_id):
        now = FIXTURE_NOW
        key = run_now(app, c.CreateApiKey(project_id=project_id, daily_budget=Decimal("5"))).value
        run_now(app, c.RevokeApiKey(key_id=UUID(key["key_id"])))
        run_now(
            app, c.TopUp(project_id=project_id, amount=Decimal("10"), currency="EUR", reference="r")
        )
        run_now(
            app,
            c.AdjustBalance(
                project_id=project_id, amount=Decimal("-1"), reason="fixture", reference="a"
            ),
        )
        run_now(app, unit_price(now))
        run_now(
            app,
            c.SetFxRate(
                base="USD", quote="EUR", rate=Decimal("0.9"), effective_from=now - timedelta(days=1)
            ),
        )

        def facts() -> c.RequestFacts:
            return request_facts(
                project_id,
                at=now,
                stream=True,
                prompt_chars=3,
                prompt_sha256="ab" * 32,
                trace_id="t",
                client_ip="127.0.0.1",
                deadline=timedelta(minutes=10),
                conversation_id="conv-1",
            )

        def admitted(**terms: Any) -> str:
            """A request admitted at `now` on model m (10 in, 10 out); its id."""
            terms.setdefault("fee_rate", Decimal("0.05"))
            command = admit_request(
                facts(), input_tokens=10, output_tokens=10, price_at=now, **terms
            )
            run_now(app, command)
            return command.facts.request_id

        admit = admitted()
        run_now(app, c.MarkStreaming(admit, 5))
        run_now(
            app,
            c.CompleteRequest(admit, c.UsageReport(10, 5), "stop", 20, None, 9, 8),
        )
        failed = admitted()
        run_now(app, c.Redispatch(failed, c.Route("m", "openai", "m", "second"), 2))
        run_now(
            app,
            c.FailRequest(failed, 502, "upstream_error", "api_error", "boom", 3),
        )
        abandoned = admitted()
        run_now(app, c.AbandonRequest(abandoned))
        run_now(
            app,
            c.RecordRejection(
                facts(), 402, "insufficient_balance", "insufficient_quota", "no money"
            ),
        )
        run_now(
            app,
            c.RecordRejection(
                facts(),
                400,
                "guardrail_violation",
                "invalid_request_error",
                "the request contains personal data this policy does not allow: IBAN_CODE",
                pii_decision=PiiDecision(
                    policy_received=True,
                    processed=True,
                    action="block",
                    sensitivity="medium",
                    language="en",
                    entity_counts=(("IBAN_CODE", 1), ("PERSON", 2)),
                    redactions_applied=0,
                    latency_ms=12.5,
                    blocked=True,
                    blocked_entity_types=("IBAN_CODE", "PERSON"),
                ),
            ),
        )
        # Issue 9: BYOK (fee-only) reservation and charge, a renewed lease, capped usage,
        # journalled usage, and a swept request corrected to its real usage.
        own = admitted(key_source="byok", fee_rate=None)
        run_now(app, c.ExtendDeadline(own, now + timedelta(minutes=20)))
        run_now(
            app,
            c.CompleteRequest(own, c.UsageReport(10, 10**9), "stop", 2, None, 9, 8),
        )
        journalled = admitted()
        run_now(
            app,
            c.JournalUsage(journalled, c.UsageReport(9, 4), "stop", 12, None, 7, 6),
        )
        late = admitted()
        run_now(app, c.AbandonRequest(late))
        run_now(
            app,
            c.CompleteRequest(late, c.UsageReport(10, 7), "stop", 14, None, 9, 8),
        )
        # Issue 14: a key's downgrade threshold; a temporary credential (a limit on the
        # Account) used by an admitted request, then revoked (its limit closed).
        from domain.cost_control import SetKeyDowngradeThreshold
        from domain.credentials import IssueCredential, RevokeCredential

        budgeted = run_now(
            app, c.CreateApiKey(project_id=project_id, daily_budget=Decimal("5"))
        ).value
        run_now(app, SetKeyDowngradeThreshold(UUID(budgeted["key_id"]), Decimal("1")))
        run_now(
            app,
            IssueCredential(
                "fixture-jti", UUID(budgeted["key_id"]), "hs256-fixture", budget=Decimal("1")
            ),
        )
        admitted(credential_id="fixture-jti")
        run_now(app, RevokeCredential("fixture-jti", project_id, "key:fixture"))
        written = write_new_fixtures(app, OUT)
    print(f"wrote {len(written)} new fixtures to {OUT}: {', '.join(written) or '-'}")


if __name__ == "__main__":
    main()
