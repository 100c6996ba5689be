"""Ledger test helpers: independent checks straight from the event store (not from
projections), an in-memory application driven by the real handlers, and a gateway whose
services run on an injected (travelling) clock."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, StoredEvent

from domain import commands as c
from domain.account import Account
from domain.application import DateAsISO, LedgerApplication, open_application
from domain.clock import Clock
from domain.ids import account_id
from domain.settlement import Posting
from domain.writer import run_now
from gateway.bootstrap import build_services
from gateway.config import Settings
from gateway.http.app import create_app
from gateway.serving import BackgroundServer
from tests.support.builders import admit_request, initial_top_up, list_price, request_facts
from tests.support.harness import ADMIN_TOKEN, Gateway


@dataclass
class Replay:
    credits: Decimal
    posted: Decimal
    pending: Decimal
    lowest_available: Decimal
    charges: dict[str, Decimal]  # request id -> amount posted
    charge_events: int
    releases: int

    @property
    def available(self) -> Decimal:
        return self.credits - self.posted - self.pending


def replay_account(app: LedgerApplication, project_id: UUID) -> Replay:
    credits = posted = pending = Decimal(0)
    lowest: Decimal | None = None
    charges: dict[str, Decimal] = {}
    charge_events = releases = 0
    for event in app.events.get(account_id(project_id)):
        if isinstance(event, Account.ToppedUp | Account.Adjusted):
            credits += event.amount
        elif isinstance(event, Account.Reserved):
            pending += event.amount
        elif isinstance(event, Account.ChargePosted):
            pending -= event.reserved_amount
            posted += event.amount
            charges[event.request_id] = charges.get(event.request_id, Decimal(0)) + event.amount
            charge_events += 1
        elif isinstance(event, Account.ReservationReleased):
            pending -= event.amount
            releases += 1
        available = credits - posted - pending
        lowest = available if lowest is None else min(lowest, available)
    return Replay(credits, posted, pending, lowest or Decimal(0), charges, charge_events, releases)


MODEL = "gpt-4o-mini"

EVENT_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "events"


def event_fixture_name(qualname: str, version: int = 1) -> str:
    """The file name, in tests/fixtures/events, of the stored-JSON fixture of the event class
    `qualname` (`Aggregate.Event`, as its topic names it) at class version `version`."""
    return qualname.replace(".", "_") + f"_v{version}.json"


def decode_event_fixture(mapper: Any, path: Path) -> tuple[Any, dict[str, Any]]:
    """The domain event a stored-JSON fixture (tests/fixtures/events) decodes into through
    `mapper`, and the fixture itself."""
    fixture = json.loads(path.read_text())
    stored = StoredEvent(
        originator_id=uuid4(),
        originator_version=1,
        topic=fixture["topic"],
        state=json.dumps(fixture["state"]).encode(),
    )
    return mapper.to_domain_event(stored), fixture


def event_fields(event: Any) -> set[str]:
    """The names of an event's own fields (its aggregate's id and version left out)."""
    return {f.name for f in dataclasses.fields(event)} - {"originator_id", "originator_version"}


def assert_fixture_decodes_as(mapper: Any, event_class: type) -> None:
    """`event_class`'s v1 fixture decodes through `mapper` into an event of exactly that
    class, carrying every field the fixture stores and no other."""
    path = EVENT_FIXTURES / event_fixture_name(event_class.__qualname__)
    event, fixture = decode_event_fixture(mapper, path)
    assert type(event) is event_class, path.name
    assert event_fields(event) == set(fixture["state"]), path.name


@contextmanager
def store_application(env: dict[str, str]) -> Iterator[LedgerApplication]:
    """The ledger application on the store `env` names (LEDGERGATE_DATABASE_URL, else SQLite
    in LEDGERGATE_DATA_DIR), closed on leaving the block."""
    app = open_application(env.get("LEDGERGATE_DATABASE_URL"), env.get("LEDGERGATE_DATA_DIR"))
    try:
        yield app
    finally:
        app.close()


def memory_app() -> LedgerApplication:
    return LedgerApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


class FreezableLedgerApplication(LedgerApplication):
    """Under freezegun, datetime.now() returns FakeDatetime (and .date() FakeDate), types the
    event store's transcoder does not know; encode them exactly like the real ones."""

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        from freezegun.api import FakeDate, FakeDatetime

        class FakeDatetimeAsISO(DatetimeAsISO):
            type = FakeDatetime

        class FakeDateAsISO(DateAsISO):
            type = FakeDate

        transcoder.register(FakeDatetimeAsISO())
        transcoder.register(FakeDateAsISO())


def freezable_memory_app() -> LedgerApplication:
    return FreezableLedgerApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


class Ledger:
    """Commands decided by the real handlers and saved to an in-memory store, on `clock`."""

    def __init__(self, clock: Clock, app: LedgerApplication | None = None) -> None:
        self.clock = clock
        self.app = app or memory_app()

    def run(self, command: c.Command) -> Any:
        return run_now(self.app, command, self.clock).value

    def project(
        self, *, plan: str = "pro", currency: str = "USD", balance: str = "1000", **kw: Any
    ) -> UUID:
        created = self.run(c.CreateProject(name="p", plan=plan, currency=currency, **kw))
        project_id = UUID(created["project_id"])
        if balance:
            self.run(initial_top_up(project_id, balance, currency))
        return project_id

    def price(self, model: str = MODEL, effective_from: datetime | None = None) -> str:
        return str(
            self.run(list_price(effective_from or self.clock.now() - timedelta(days=400), model))[
                "price_id"
            ]
        )

    def admit(self, project_id: UUID, **kw: Any) -> Any:
        return self.run(admit_command(project_id, self.clock.now(), **kw))


def admit_command(
    project_id: UUID,
    now: datetime,
    *,
    request_id: str | None = None,
    key_id: UUID | None = None,
    daily_budget: Decimal | None = None,
    key_source: str = "managed",
    input_tokens: int = 1000,
    output_tokens: int = 1000,
    idempotency_key_sha256: str | None = None,
) -> c.AdmitRequest:
    facts = request_facts(
        project_id,
        at=now,
        request_id=request_id,
        key_id=key_id,
        actor_id="tester",
        model=MODEL,
        deadline=timedelta(minutes=10),
        idempotency_key_sha256=idempotency_key_sha256,
    )
    return admit_request(
        facts,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        fee_rate=None,
        key_source=key_source,
        daily_budget=daily_budget,
    )


def start_clocked_gateway(env: dict[str, str], clock: Clock) -> Gateway:
    settings = Settings.from_env({"LEDGERGATE_ADMIN_TOKEN": ADMIN_TOKEN, **env})
    services = build_services(settings, clock)
    server = BackgroundServer(create_app(settings, services)).start()
    return Gateway(server=server, services=services, settings=settings)


def post_plain_charge(
    account: Account, request_id: str, amount: Decimal, now: datetime, **terms: Any
) -> Decimal:
    """Post `amount` as the charge for `request_id` with neutral pricing terms (USD, rate 1,
    no fee, one token each way); `terms` overrides any of them (key_id, daily_budget, …)."""
    fields: dict[str, Any] = {
        "provider_cost": amount,
        "provider_currency": "USD",
        "fx_rate": Decimal(1),
        "fx_rate_id": None,
        "price_id": "p",
        "fee_rate": Decimal(0),
        "fee_amount": Decimal(0),
        "key_source": "managed",
        "usage_source": "provider",
        "provider": "openai",
        "model": "m",
        "upstream_model": "m",
        "input_tokens": 1,
        "output_tokens": 1,
        "cached_tokens": 0,
        "key_id": None,
        "actor_id": None,
    }
    fields.update(terms)
    options = {
        name: fields.pop(name)
        for name in ("daily_budget", "budget_amount", "cap_at_reservation")
        if name in fields
    }
    return account.post_charge(
        request_id=request_id, actual_amount=amount, posting=Posting(**fields), now=now, **options
    )
