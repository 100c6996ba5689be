"""Read commands of the CLI: `project list|show`, `key list`, `price list`, `fx list`,
`model list`, `audit show`. A table for people (rich, on stdout); `--json` prints one JSON
object instead, for scripts. Nothing secret is shown: keys by id and prefix only (the store
has only their hashes), provider keys by provider only.

Projects and keys are read from the event log (their aggregates); prices, FX rates,
balances and the audit record from the read models, brought up to date first (as the
projection worker would), with a progress bar on stderr.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.utils import get_topic
from rich.console import Console, Group
from rich.table import Table

from domain.application import open_application
from domain.catalog import Catalog
from domain.project import ApiKey, Project
from domain.routing import ProjectRouting
from gateway.config import Settings
from gateway.jsonable import jsonable
from gateway.progress import progress_bar
from projections.audit import AuditView
from projections.balances import BalancesView
from projections.db import ReadStore
from projections.ledger_queries import pricing_events
from projections.listings import list_fx_rates, list_prices
from projections.pricing import PricingHistoryView
from projections.queries import get_audit, get_balance
from projections.runner import ProjectionRunner

NOTIFICATIONS_PAGE = 1000
TABLE_WIDTH_PIPED = 220  # columns when stdout is not a terminal

# A table's columns: each a record's field, headed by its name in words ("daily_budget":
# "daily budget"), or (heading, field) where the heading says it otherwise.
Columns = tuple[str | tuple[str, str], ...]
# (command, action) pairs this module answers.
READ_COMMANDS = frozenset(
    {
        ("project", "list"),
        ("project", "show"),
        ("key", "list"),
        ("price", "list"),
        ("fx", "list"),
        ("model", "list"),
        ("audit", "show"),
    }
)


def add_read_commands(
    sub: Any,
    *,
    project: Any,
    key: Any,
    price: Any,
    fx: Any,
    model: Any,
    uuid_type: Callable[[str], UUID],
    instant_type: Callable[[str], datetime],
) -> Any:
    """Adds the read commands to the parser; returns the `audit` subparsers (other audit
    actions such as `export` are added to it)."""

    def with_json(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--json", action="store_true", help="one JSON object, for scripts")
        return parser

    with_json(project.add_parser("list", help="every project"))
    show = with_json(project.add_parser("show", help="one project: settings, keys, balance"))
    show.add_argument("project_id", type=uuid_type, metavar="PROJECT_ID")
    key_list = with_json(key.add_parser("list", help="API keys by id and prefix (never the key)"))
    key_list.add_argument("--project", type=uuid_type)
    price_list = with_json(price.add_parser("list", help="recorded prices, or those in effect"))
    price_list.add_argument("--model")
    price_list.add_argument("--at", type=instant_type, help="only the price in effect at T")
    fx_list = with_json(fx.add_parser("list", help="recorded FX rates, or those in effect"))
    fx_list.add_argument("--at", type=instant_type, help="only the rate in effect at T")
    model_list = with_json(model.add_parser("list", help="the model catalog"))
    model_list.add_argument("--project", type=uuid_type, help="with this project's custom models")
    audit = sub.add_parser("audit", help="the audit log").add_subparsers(
        dest="action", required=True
    )
    audit_show = with_json(audit.add_parser("show", help="one request's whole audit record"))
    audit_show.add_argument("request_id", metavar="REQUEST_ID")
    return audit


def is_read_command(args: argparse.Namespace) -> bool:
    return (args.command, getattr(args, "action", None)) in READ_COMMANDS


def run_read_command(settings: Settings, args: argparse.Namespace) -> int:
    app = open_application(settings.database_url, settings.data_dir)
    store = ReadStore(settings.database_url, settings.data_dir)
    try:
        store.migrate()
        handler = HANDLERS[(args.command, args.action)]
        return handler(app, store, args)
    finally:
        store.close()
        app.close()


# --- helpers ------------------------------------------------------------------------------


def _catch_up(app: Any, store: Any, views: Sequence[Any]) -> None:
    with progress_bar("bringing the read models up to date") as advance:
        ProjectionRunner(app, store, list(views), progress=advance).catch_up()


def _aggregates(app: Any, created: type) -> list[Any]:
    """Every aggregate whose creation event has this class, in log order."""
    topic = get_topic(created)
    found: list[Any] = []
    start = 1
    while True:
        page = app.recorder.select_notifications(
            start=start, limit=NOTIFICATIONS_PAGE, topics=[topic]
        )
        for notification in page:
            found.append(app.repository.get(notification.originator_id))
        if len(page) < NOTIFICATIONS_PAGE:
            return found
        start = page[-1].id + 1


def _print(payload: dict[str, Any], args: argparse.Namespace, table: Callable[[], Any]) -> int:
    if args.json:
        from gateway.cli import emit  # gateway.cli imports this module

        emit(payload)
    else:
        console = Console(highlight=False)
        if not console.is_terminal:  # a pipe or a file: wide enough that ids stay whole
            console = Console(highlight=False, width=TABLE_WIDTH_PIPED)
        console.print(table())
    return 0


def _table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    return table


def _cell(value: Any) -> Any:
    """A record's field as a table shows it: a yes/no as "yes" or blank, a list its items."""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, list):
        return ", ".join(value)
    return value


def _records_table(title: str, columns: Columns, records: Iterable[dict[str, Any]]) -> Table:
    """One row per record, one column per field."""
    named = [(c.replace("_", " "), c) if isinstance(c, str) else c for c in columns]
    return _table(
        title,
        (heading for heading, _ in named),
        ((_cell(record[field]) for _, field in named) for record in records),
    )


def _fail(code: str, message: str) -> int:
    from gateway.cli import fail  # gateway.cli imports this module

    return fail(code, message)


# --- projects and keys --------------------------------------------------------------------


def _project_record(project: Project, balance: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "project_id": str(project.id),
        "name": project.name,
        "tier": project.tier,
        "plan": project.plan,
        "currency": project.currency,
        "fee_rate": format(project.fee_rate, "f"),
        "strict": project.strict,
        "created_at": project.created_at.isoformat(),
        "provider_keys": sorted(project.provider_keys_view()),
        "available": None if balance is None else balance["available"],
    }


def _key_record(key: ApiKey) -> dict[str, Any]:
    return {
        "key_id": str(key.id),
        "project_id": str(key.project_id),
        "prefix": key.key_prefix,
        "daily_budget": None if key.daily_budget is None else format(key.daily_budget, "f"),
        "revoked": key.revoked,
        "created_at": key.created_at.isoformat(),
    }


PROJECT_COLUMNS: Columns = (
    ("id", "project_id"),
    "name",
    "tier",
    "plan",
    "currency",
    "available",
    "strict",
)
PROJECT_KEY_COLUMNS: Columns = ("key_id", "prefix", "daily_budget", "revoked", "created_at")
KEY_COLUMNS: Columns = ("key_id", "prefix", ("project", "project_id"), "daily_budget", "revoked")


def project_list(app: Any, store: Any, args: argparse.Namespace) -> int:
    _catch_up(app, store, [BalancesView()])
    records = [
        _project_record(p, get_balance(store, str(p.id))) for p in _aggregates(app, Project.Created)
    ]
    return _print(
        {"object": "list", "data": records},
        args,
        lambda: _records_table(f"{len(records)} projects", PROJECT_COLUMNS, records),
    )


def project_show(app: Any, store: Any, args: argparse.Namespace) -> int:
    try:
        project = app.repository.get(args.project_id)
    except AggregateNotFoundError:
        project = None
    if not isinstance(project, Project):
        return _fail("project_not_found", f"no project {args.project_id}")
    _catch_up(app, store, [BalancesView()])
    balance = get_balance(store, str(project.id))
    keys = [
        _key_record(k)
        for k in _aggregates(app, ApiKey.Created)
        if isinstance(k, ApiKey) and k.project_id == project.id
    ]
    record = {
        "object": "project",
        **_project_record(project, balance),
        "balance": balance,
        "keys": keys,
    }

    def tables() -> Any:
        fields = [
            (name, record[name])
            for name in ("project_id", "name", "tier", "plan", "currency", "fee_rate", "strict",
                         "created_at")
        ]  # fmt: skip
        fields.append(("provider keys", ", ".join(record["provider_keys"]) or "none"))
        if balance is not None:
            for name in ("credits", "posted", "pending", "available"):
                fields.append((name, balance[name]))
        return Group(
            _table(f"project {project.name}", ("field", "value"), fields),
            _records_table(f"{len(keys)} API keys", PROJECT_KEY_COLUMNS, keys),
        )

    return _print(record, args, tables)


def key_list(app: Any, store: Any, args: argparse.Namespace) -> int:
    keys = [
        _key_record(k)
        for k in _aggregates(app, ApiKey.Created)
        if isinstance(k, ApiKey) and (args.project is None or k.project_id == args.project)
    ]
    return _print(
        {"object": "list", "data": keys},
        args,
        lambda: _records_table(f"{len(keys)} API keys", KEY_COLUMNS, keys),
    )


# --- prices, FX rates, models -------------------------------------------------------------


PRICE_COLUMNS: Columns = (
    "model",
    ("input / Mtok", "input_per_mtok"),
    ("output / Mtok", "output_per_mtok"),
    ("cached / Mtok", "cached_input_per_mtok"),
    "currency",
    "effective_from",
    "source",
)
FX_COLUMNS: Columns = (
    "base",
    "quote",
    ("rate (1 base = rate quote)", "rate"),
    "effective_from",
    "source",
)
MODEL_COLUMNS: Columns = (
    "model",
    "provider",
    ("size", "size_class"),
    "tiers",
    "capabilities",
    "source",
)


def _print_in_effect(
    result: dict[str, Any], args: argparse.Namespace, what: str, columns: Columns
) -> int:
    """A dated listing (prices, FX rates): titled by its count and, with --at, the instant."""
    rows = result["data"]
    title = f"{len(rows)} {what}" + (f" in effect at {args.at.isoformat()}" if args.at else "")
    return _print(result, args, lambda: _records_table(title, columns, rows))


def price_list(app: Any, store: Any, args: argparse.Namespace) -> int:
    _catch_up(app, store, [PricingHistoryView()])
    model = args.model.strip().lower() if args.model else None
    result = list_prices(store, model=model, at=args.at)
    return _print_in_effect(result, args, "prices", PRICE_COLUMNS)


def fx_list(app: Any, store: Any, args: argparse.Namespace) -> int:
    _catch_up(app, store, [PricingHistoryView()])
    result = list_fx_rates(store, at=args.at)
    return _print_in_effect(result, args, "FX rates", FX_COLUMNS)


def model_list(app: Any, store: Any, args: argparse.Namespace) -> int:
    catalog = Catalog.shipped()
    if args.project is not None:
        try:
            routing = app.repository.get(ProjectRouting.create_id(str(args.project)))
            catalog = catalog.with_models(*routing.custom_models())
        except AggregateNotFoundError:
            pass  # no custom models
    records: list[dict[str, Any]] = [
        {
            "model": spec.name,
            "provider": spec.provider,
            "upstream_id": spec.upstream_id,
            "aliases": list(spec.aliases),
            "size_class": spec.size_class,
            "tiers": sorted(str(t.value) for t in spec.tiers),
            "capabilities": sorted(spec.capabilities),
            "regions": list(spec.regions),
            "named_only": spec.named_only,
            "source": spec.source,
        }
        for spec in catalog.models
    ]
    return _print(
        {"object": "list", "data": records},
        args,
        lambda: _records_table(f"{len(records)} models", MODEL_COLUMNS, records),
    )


# --- the audit record ---------------------------------------------------------------------


def audit_show(app: Any, store: Any, args: argparse.Namespace) -> int:
    _catch_up(app, store, [AuditView(), PricingHistoryView()])
    record, position = get_audit(store, args.request_id.strip()[:100])
    if record is None:
        return _fail("request_not_found", "no such request")
    pricing = record.get("pricing") or {}
    pricing.update(
        pricing_events(
            store, price_id=pricing.get("price_id"), fx_rate_id=pricing.get("fx_rate_id")
        )
    )
    if record.get("pricing") is not None:
        record["pricing"] = pricing
    payload = {**record, "as_of_position": position}

    def table() -> Table:
        flat = jsonable(payload)
        rows: list[tuple[str, Any]] = []
        for name, item in flat.items():
            if isinstance(item, dict):
                rows.extend((f"{name}.{k}", v) for k, v in item.items())
            else:
                rows.append((name, item))
        return _table(f"request {args.request_id}", ("field", "value"), rows)

    return _print(payload, args, table)


HANDLERS: dict[tuple[str, str], Callable[[Any, Any, argparse.Namespace], int]] = {
    ("project", "list"): project_list,
    ("project", "show"): project_show,
    ("key", "list"): key_list,
    ("price", "list"): price_list,
    ("fx", "list"): fx_list,
    ("model", "list"): model_list,
    ("audit", "show"): audit_show,
}
