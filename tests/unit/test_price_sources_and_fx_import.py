"""Which price wins (operator over catalog, whatever the dates), idempotent catalog seeding and
FX imports, the per-project price book of a custom model, the ECB file parser, and the admin
checks shared by the HTTP API and the CLI. No IO beyond the fixture files."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from uuid import uuid4

import pytest

from domain import commands as c
from domain.catalog import Catalog
from domain.errors import InvalidCommand, PriceNotFound
from domain.handlers import UnitOfWork, import_fx_rates, price_in_effect, set_price
from domain.ids import price_book_id
from domain.pricing import FxBook, PriceBook, catalog_price_id
from domain.routing import ProjectRouting
from gateway.admin_checks import check_strict_project, price_model
from gateway.errors import GatewayError, error_response
from gateway.fx_import import effective_instant, fx_rows, parse_ecb_csv
from tests.unit.routing.test_routing_aggregates import custom_model

ECB = Path(__file__).resolve().parents[1] / "fixtures" / "ecb"
JAN, JUN, DEC = (datetime(2026, month, 1, tzinfo=UTC) for month in (1, 6, 12))


def book() -> PriceBook:
    return PriceBook.open(book_id=price_book_id("gpt-4o"), model="gpt-4o")


def price(target: PriceBook, amount: str, since: datetime, source: str) -> str:
    return target.set_price(
        input_per_mtok=Decimal(amount),
        output_per_mtok=Decimal(amount),
        currency="USD",
        effective_from=since,
        source=source,
    )


def test_an_operator_price_is_never_superseded_by_a_later_catalog_price() -> None:
    prices = book()
    price(prices, "1", JAN, "catalog")
    operator = price(prices, "2", JAN.replace(day=2), "operator")
    price(prices, "3", JUN, "catalog")  # the catalog seed of a later list price
    assert prices.price_at(DEC).price_id == operator
    assert prices.price_at(JAN.replace(hour=12)).input_per_mtok == Decimal(1)  # before it


def test_a_later_operator_price_supersedes_an_earlier_one() -> None:
    prices = book()
    price(prices, "2", JAN, "operator")
    later = price(prices, "5", JUN, "operator")
    assert prices.price_at(DEC).price_id == later


def test_a_catalog_row_already_recorded_is_not_recorded_again_and_keeps_one_id() -> None:
    prices = book()
    first = price(prices, "1", JAN, "catalog")
    again = price(prices, "1", JAN, "catalog")  # a second process seeding on fresh state
    assert first == again == catalog_price_id("gpt-4o", JAN)
    assert len(prices.prices) == 1 and len(prices.pending_events) == 2  # opened + one price


def test_an_unknown_price_source_is_refused() -> None:
    with pytest.raises(InvalidCommand):
        price(book(), "1", JAN, "admin-ish")


def test_a_custom_models_price_lives_in_its_projects_book_and_nowhere_else() -> None:
    from domain.clock import SystemClock

    stored: dict = {}
    uow = UnitOfWork(stored.get, SystemClock())
    mine, theirs = uuid4(), uuid4()
    for project, amount in ((mine, "1"), (theirs, "5000")):
        set_price(
            c.SetPrice(model="shared-llm", input_per_mtok=Decimal(amount),
                       output_per_mtok=Decimal(amount), currency="USD", effective_from=JAN,
                       project_id=project),
            uow,
        )  # fmt: skip
    assert price_in_effect(uow, "shared-llm", DEC, mine).input_per_mtok == Decimal(1)
    assert price_in_effect(uow, "shared-llm", DEC, theirs).input_per_mtok == Decimal(5000)
    with pytest.raises(PriceNotFound):  # no shared price exists for a custom model's name
        price_in_effect(uow, "shared-llm", DEC)


def test_a_custom_models_price_from_before_per_project_books_counts_for_its_project_only() -> None:
    from domain.clock import SystemClock

    mine, theirs = uuid4(), uuid4()
    legacy = PriceBook.open(book_id=price_book_id("shared-llm"), model="shared-llm")
    for project, amount in ((mine, "1"), (theirs, "5000")):
        legacy.trigger_event(  # a PriceSet as recorded before per-project books
            PriceBook.PriceSet,
            price_id=str(uuid4()),
            input_per_mtok=Decimal(amount),
            output_per_mtok=Decimal(amount),
            cached_input_per_mtok=None,
            currency="USD",
            effective_from=JAN,
            source=f"custom:{project}",
        )
    uow = UnitOfWork({legacy.id: legacy}.get, SystemClock())
    assert price_in_effect(uow, "shared-llm", DEC, mine).input_per_mtok == Decimal(1)
    assert price_in_effect(uow, "shared-llm", DEC, theirs).input_per_mtok == Decimal(5000)


# ---- FX: the ECB files ---------------------------------------------------------------------


def test_the_single_day_ecb_file_is_read_with_its_spelled_date_and_trailing_column() -> None:
    (day,) = parse_ecb_csv((ECB / "eurofxref.csv").read_bytes())
    assert day.day == date(2026, 11, 27)
    assert day.rates["USD"] == Decimal("1.0552") and day.rates["SEK"] == Decimal("11.5575")
    assert "" not in day.rates and len(day.rates) == 30


def test_the_history_file_skips_na_and_gives_every_day_oldest_first() -> None:
    days = parse_ecb_csv((ECB / "eurofxref-hist.csv").read_bytes())
    assert [day.day for day in days] == [date(1999, 1, 4), date(2026, 11, 26), date(2026, 11, 27)]
    assert "CYP" in days[0].rates and "CYP" not in days[-1].rates  # N/A after 2007
    rows = fx_rows(days)
    newest = [row for row in rows if row[4].endswith("2026-11-27")]
    assert {(base, quote) for base, quote, *_ in newest} == {
        ("EUR", "USD"),
        ("EUR", "SEK"),
        ("SEK", "USD"),
    }
    cross = next(row for row in newest if row[0] == "SEK")
    assert cross[2] == (Decimal("1.0552") / Decimal("11.5575")).quantize(Decimal("1e-10"))
    assert cross[4] == "ecb-cross:2026-11-27"
    assert all(row[3] == effective_instant(date(2026, 11, 27)) for row in newest)
    assert effective_instant(date(2026, 11, 27)).hour == 15  # 16:00 in Frankfurt, winter
    assert fx_rows(days, since=date(2026, 11, 27)) == newest


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"Currency,Rate\nUSD,1.1\n",
        b"Date, USD, \n27 November 2026, abc, \n",
        b"Date, USD, \nyesterday, 1.1, \n",
    ],  # fmt: skip
)
def test_a_file_that_is_not_an_ecb_rate_file_is_refused_clearly(content: bytes) -> None:
    with pytest.raises(InvalidCommand) as refused:
        parse_ecb_csv(content)
    assert refused.value.details["param"] == "file"


def test_importing_the_same_rates_twice_records_them_once() -> None:
    from domain.clock import SystemClock

    stored: dict = {}
    rows = tuple(fx_rows(parse_ecb_csv((ECB / "eurofxref-hist.csv").read_bytes())))
    first_uow = UnitOfWork(stored.get, SystemClock())
    first = import_fx_rates(c.ImportFxRates(rows=rows), first_uow)
    stored.update(first_uow.touched)
    second = import_fx_rates(c.ImportFxRates(rows=rows), UnitOfWork(stored.get, SystemClock()))
    assert first["recorded"] == len(rows) == 9 and second["recorded"] == 0
    books = [value for value in stored.values() if isinstance(value, FxBook)]
    assert sum(len(fx.rates) for fx in books) == len(rows)


# ---- admin checks shared by HTTP and the CLI ------------------------------------------------


def test_price_set_refuses_an_unknown_model_naming_the_closest_ones() -> None:
    with pytest.raises(InvalidCommand) as refused:
        price_model(Catalog.shipped(), None, "gpt-4o-mni", None)
    assert "gpt-4o-mini" in refused.value.details["close_matches"]
    assert "did you mean" in refused.value.message
    assert price_model(Catalog.shipped(), None, "GPT-4o-mini", None) == "gpt-4o-mini"


def test_price_set_for_a_project_accepts_only_that_projects_custom_models() -> None:
    project = uuid4()
    routing = ProjectRouting(str(project))
    routing.add_custom_model(custom_model(), added_by="admin")
    assert price_model(Catalog.shipped(), routing, "acme-mistral-ft", project) == "acme-mistral-ft"
    with pytest.raises(InvalidCommand) as typo:
        price_model(Catalog.shipped(), routing, "acme-mistral-f", project)
    assert typo.value.details["close_matches"] == ["acme-mistral-ft"]
    with pytest.raises(InvalidCommand):  # a catalog model's price is global
        price_model(Catalog.shipped(), routing, "gpt-4o-mini", project)
    with pytest.raises(InvalidCommand):  # and a custom model needs its project
        price_model(Catalog.shipped(), None, "acme-mistral-ft", None)


def test_a_strict_project_without_the_actor_token_secret_is_refused() -> None:
    with pytest.raises(InvalidCommand) as refused:
        check_strict_project(None, strict=True)
    assert "LEDGERGATE_ACTOR_TOKEN_SECRET" in refused.value.message
    check_strict_project(None, strict=False)
    check_strict_project("s", strict=True)


@pytest.mark.parametrize(
    ("code", "status", "retry"),
    [
        ("fx_rate_not_found", 503, "false"),
        ("duplicate_request", 409, "false"),
        ("quota_exceeded", 429, "false"),
        ("invalid_request", 400, "false"),
        ("no_route_available", 503, None),
        ("upstream_rate_limited", 429, None),
    ],  # fmt: skip
)
def test_only_transient_errors_leave_the_retry_to_the_sdk(
    code: str, status: int, retry: str | None
) -> None:
    response = error_response(GatewayError(code, "m", status=status), "lg_req_1")
    assert response.headers.get("x-should-retry") == retry
    if code == "fx_rate_not_found":
        assert GatewayError(code, "m").error_type == "configuration_error"
