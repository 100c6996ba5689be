"""The `ledgergate` command. Admin commands print exactly one JSON object on stdout
(errors too, as {"error": {...}} with exit status 1).

The admin commands (`project create`, `key create`, `topup`, `price set`, …) need the
domain, the event store and the read side the `list`/`show` reads share. What only the
long-running and finance commands need — the web stack and the providers (`serve`, `demo`,
`sweep`), Kafka (`relay`, `projections --source kafka`), polars (`ledger`, `reconcile`) — is
imported inside their handler, so a script calling the admin commands does not pay seconds
of imports per call.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import tomllib
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from domain import commands as c
from domain.application import open_application
from domain.catalog import Catalog
from domain.clock import parse_instant
from domain.commands import Command
from domain.errors import DomainError
from domain.money import to_decimal
from domain.pricing import PRICE_SOURCE_OPERATOR
from domain.routing import ProjectRouting
from domain.settlement import DEFAULT_FEE_RATE
from domain.writer import run_now
from gateway import admin_commands, heap
from gateway.audit import AuditConfigError, AuditService
from gateway.audit_cli import add_audit_commands, run_audit_command
from gateway.cache_cli import add_cache_commands, run_cache_command
from gateway.cli_reads import add_read_commands, is_read_command, run_read_command
from gateway.config import Settings
from gateway.errors import GatewayError
from gateway.fx_import import fx_rows, parse_ecb_csv
from gateway.jsonable import jsonable
from gateway.observability.logs import configure_logging
from gateway.progress import progress_bar
from projections.db import ReadStore
from projections.ledger_entries import LedgerEntriesView, ReconciliationsView
from projections.queries import tracked_position
from projections.runner import ProjectionRunner, default_views, list_dead_letters

DEMO_SETTLE_POLLS = (
    100  # x 0.1 s: how long the smoke run waits for the stream's charge and audit row
)
DEMO_SIMULATED_PROVIDERS = ("openai", "mistral", "moonshot", "xai")
# Demo FX rates (1 base = rate USD), recorded as FX events with source "demo" so a USD
# project can use the EUR-priced Mistral models; set real ones with `ledgergate fx set`.
DEMO_FX_TO_USD = (("EUR", "1.08"), ("SEK", "0.095"))
DEMO_PRICES = (
    # model, input per Mtok, output per Mtok (USD): list prices of the models the demo names
    ("gpt-4o-mini", "0.15", "0.60"),
    ("gpt-4.1", "2.00", "8.00"),
    ("gpt-5-mini", "0.25", "2.00"),
)


def emit(payload: Any) -> None:

    print(json.dumps(jsonable(payload), sort_keys=True))


def fail(code: str, message: str) -> int:
    emit({"error": {"code": code, "message": message}})
    return 1


def _uuid(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a UUID: {text!r}") from None


def _decimal(text: str) -> Decimal:
    try:
        return to_decimal(text)
    except DomainError as error:
        raise argparse.ArgumentTypeError(error.message) from None


def _instant(text: str) -> datetime:
    try:
        return parse_instant(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 instant with a timezone: {text!r}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ledgergate", description="A governed LLM gateway on an event-sourced ledger"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    project = sub.add_parser("project", help="projects").add_subparsers(
        dest="action", required=True
    )
    create = project.add_parser("create")
    create.add_argument("--name", required=True)
    create.add_argument("--tier", default="unrestricted")
    create.add_argument("--plan", default="pro")
    create.add_argument("--currency", default="USD")
    create.add_argument("--fee-rate", type=_decimal, default=DEFAULT_FEE_RATE)
    create.add_argument("--strict", action="store_true")
    set_plan = project.add_parser("set-plan", help="free | trial | pro | enterprise")
    set_plan.add_argument("--project", type=_uuid, required=True)
    set_plan.add_argument("--plan", required=True)
    set_tier = project.add_parser("set-tier", help="the project's compliance tier")
    set_tier.add_argument("--project", type=_uuid, required=True)
    set_tier.add_argument("--tier", required=True)
    set_fee = project.add_parser("set-fee", help="a negotiated fee (enterprise projects only)")
    set_fee.add_argument("--project", type=_uuid, required=True)
    set_fee.add_argument("--fee-rate", type=_decimal, required=True)

    provider_key = sub.add_parser(
        "provider-key", help="bring-your-own provider keys (needs LEDGERGATE_SECRET_KEY)"
    ).add_subparsers(dest="action", required=True)
    provider_key_set = provider_key.add_parser(
        "set", help="store a project's own key for a provider, AES-GCM encrypted"
    )
    provider_key_set.add_argument("--project", type=_uuid, required=True)
    provider_key_set.add_argument("--provider", required=True)
    provider_key_set.add_argument(
        "--api-key-file",
        required=True,
        help="a file holding the key (a file, not an argument: argv shows in process lists)",
    )
    provider_key_remove = provider_key.add_parser("remove")
    provider_key_remove.add_argument("--project", type=_uuid, required=True)
    provider_key_remove.add_argument("--provider", required=True)

    key = sub.add_parser("key", help="API keys").add_subparsers(dest="action", required=True)
    key_create = key.add_parser("create")
    key_create.add_argument("--project", type=_uuid, required=True)
    key_create.add_argument("--daily-budget", type=_decimal)
    key_create.add_argument("--test", action="store_true", help="issue an lg_test_ key")
    key_revoke = key.add_parser("revoke")
    key_revoke.add_argument("--key", type=_uuid, required=True)
    key_revoke.add_argument("--reason", default="revoked by admin")
    key_downgrade = key.add_parser(
        "set-downgrade",
        help="below this much left of the key's daily budget, auto and shorthands are served "
        "by the cheapest compliant model",
    )
    key_downgrade.add_argument("--key", type=_uuid, required=True)
    threshold = key_downgrade.add_mutually_exclusive_group(required=True)
    threshold.add_argument("--threshold", type=_decimal)
    threshold.add_argument("--clear", action="store_true", help="no downgrade")

    topup = sub.add_parser(
        "topup", help="credit a project's prepaid balance (idempotent per reference)"
    )
    topup.add_argument("--project", type=_uuid, required=True)
    topup.add_argument("--amount", type=_decimal, required=True)
    topup.add_argument("--currency", required=True)
    topup.add_argument("--reference", required=True)
    topup.add_argument(
        "--test", action="store_true", help="top up the project's test balance (lg_test_ keys)"
    )

    price = sub.add_parser("price", help="effective-dated model prices").add_subparsers(
        dest="action", required=True
    )
    price_set = price.add_parser("set")
    price_set.add_argument("--model", required=True)
    price_set.add_argument("--input-per-mtok", type=_decimal, required=True)
    price_set.add_argument("--output-per-mtok", type=_decimal, required=True)
    price_set.add_argument("--cached-input-per-mtok", type=_decimal)
    price_set.add_argument("--currency", default="USD")
    price_set.add_argument("--effective-from", type=_instant, required=True)
    price_set.add_argument(
        "--project", type=_uuid, help="the project whose custom model this prices"
    )

    model = sub.add_parser(
        "model", help="per-project custom models and endpoints (recorded as events)"
    ).add_subparsers(dest="action", required=True)
    model_add = model.add_parser(
        "add", help="add a custom model from a TOML file shaped like one models.toml entry"
    )
    model_add.add_argument("--project", type=UUID, required=True)
    model_add.add_argument("--file", required=True)
    endpoint_add = model.add_parser("endpoint", help="add a custom endpoint to a project")
    endpoint_add.add_argument("--project", type=UUID, required=True)
    endpoint_add.add_argument("--provider", required=True)
    endpoint_add.add_argument("--name", required=True)
    endpoint_add.add_argument("--base-url", required=True)
    endpoint_add.add_argument("--region", default="")
    endpoint_add.add_argument(
        "--api-key-ref",
        "--api-key-env",  # the old spelling; an environment name is refused either way
        dest="api_key_ref",
        default="",
        help="byok:<provider>: the project's own key stored with `provider-key set` (the "
        "server's environment is never used)",
    )
    endpoint_add.add_argument("--models", default="", help="comma-separated allow-list")

    fx = sub.add_parser("fx", help="effective-dated FX rates").add_subparsers(
        dest="action", required=True
    )
    fx_set = fx.add_parser("set")
    fx_set.add_argument("--base", required=True)
    fx_set.add_argument("--quote", required=True)
    fx_set.add_argument("--rate", type=_decimal, required=True)
    fx_set.add_argument("--effective-from", type=_instant, required=True)
    fx_import = fx.add_parser(
        "import",
        help="load the ECB euro reference rates (eurofxref.csv or eurofxref-hist.csv); "
        "re-importing adds nothing",
    )
    fx_import.add_argument("file", help="the CSV as the ECB publishes it (unzipped)")
    fx_import.add_argument(
        "--since", type=date.fromisoformat, help="only days from this date (YYYY-MM-DD)"
    )

    actor = sub.add_parser("actor-token", help="issue an X-Actor-Token for a strict project")
    actor.add_argument("--project", type=_uuid, required=True)
    actor.add_argument("--actor", required=True)
    actor.add_argument("--ttl-seconds", type=int, default=3600)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="serving processes sharing the port (PostgreSQL only for more than one)",
    )
    serve.add_argument(
        "--projection-worker",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="project the views in their own process (default: on with --workers > 1)",
    )

    demo = sub.add_parser(
        "demo", help="run everything on the embedded default with a simulated upstream"
    )
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument(
        "--smoke",
        action="store_true",
        help="send requests through the demo, print the result, exit",
    )

    projections = sub.add_parser("projections", help="read models").add_subparsers(
        dest="action", required=True
    )
    rebuild = projections.add_parser(
        "rebuild", help="drop the read models and replay the event log into them"
    )
    rebuild.add_argument("--view", action="append")
    projections_run = projections.add_parser(
        "run", help="follow the event log and keep the read models current (worker)"
    )
    dead_letters = projections.add_parser(
        "dead-letters", help="list the events a view could not apply (and passed over)"
    )
    dead_letters.add_argument("--view")
    dead_letters.add_argument("--limit", type=int, default=100)
    projections_run.add_argument(
        "--source",
        choices=("log", "kafka"),
        default="log",
        help="log: the event store (default); kafka: the relay's topic (LEDGERGATE_KAFKA_*)",
    )
    projections_run.add_argument(
        "--view", action="append", help="only these views (repeatable; default all)"
    )
    projections_run.add_argument(
        "--once", action="store_true", help="apply what is there now, then exit"
    )

    relay = sub.add_parser(
        "relay", help="publish the event log to Kafka (the outbox relay)"
    ).add_subparsers(dest="action", required=True)
    relay_run = relay.add_parser(
        "run", help="publish every stored event, in log order, to LEDGERGATE_KAFKA_TOPIC"
    )
    relay_run.add_argument(
        "--once",
        action="store_true",
        help="publish everything recorded so far, then exit",
    )

    sweep = sub.add_parser(
        "sweep", help="abandon requests stuck past their deadline and settle them"
    )
    sweep.add_argument("--grace-seconds", type=float)

    ledger = sub.add_parser("ledger", help="replay and export the ledger").add_subparsers(
        dest="action", required=True
    )
    ledger_balance = ledger.add_parser(
        "balance", help="a project's balance replayed to any instant"
    )
    ledger_balance.add_argument("--project", type=_uuid, required=True)
    ledger_balance.add_argument("--as-of", type=_instant, required=True, dest="as_of")
    ledger_export = ledger.add_parser(
        "export", help="every ledger entry, for finance tools (money as exact decimals)"
    )
    ledger_export.add_argument("--format", choices=("parquet", "csv"), required=True)
    ledger_export.add_argument("--output", help="file to write (default ./ledger-entries.<format>)")

    reconcile = sub.add_parser(
        "reconcile",
        help="compare the ledger's provider costs with a provider invoice and record the result",
        description="Compares what the ledger says PROVIDER cost in MONTH (per model, and per "
        "day when the invoice has days) with the invoice, prints the table on stderr and one "
        "JSON object on stdout, and records a ReconciliationRecorded event. Invoice layouts: "
        "generic CSV (date,provider,model,input_tokens,output_tokens,cost,currency; date "
        "optional), the OpenAI cost export, the Claude Console cost export; see "
        "reconciliation/invoices.py.",
    )
    reconcile.add_argument("--provider", required=True)
    reconcile.add_argument("--month", required=True, help="YYYY-MM (UTC)")
    reconcile.add_argument("--invoice", required=True, help="invoice CSV file")
    reconcile.add_argument(
        "--layout",
        default="auto",
        choices=("auto", "generic", "openai_costs", "anthropic_costs"),
    )
    reconcile.add_argument(
        "--tolerance",
        type=_decimal,
        default=Decimal("0.01"),
        help="absolute, in the invoice currency (default 0.01)",
    )
    reconcile.add_argument(
        "--relative-tolerance",
        type=_decimal,
        default=Decimal("0"),
        dest="relative_tolerance",
        help="fraction of the invoiced amount, e.g. 0.001 for 0.1%%",
    )
    reconcile.add_argument(
        "--model-alias",
        action="append",
        default=[],
        dest="model_aliases",
        metavar="INVOICE_NAME=MODEL_ID",
        help="map an invoice model name to the ledger's upstream model id (repeatable)",
    )
    reconcile.add_argument(
        "--adjust",
        action="store_true",
        help="also record an adjustment of --project's balance by the total difference",
    )
    reconcile.add_argument("--project", type=_uuid, help="the project --adjust adjusts")

    audit = add_read_commands(
        sub,
        project=project,
        key=key,
        price=price,
        fx=fx,
        model=model,
        uuid_type=_uuid,
        instant_type=_instant,
    )  # list/show commands and `audit show` (gateway/cli_reads.py)

    add_audit_commands(sub, audit)  # audit export|status|checkpoint, verify
    add_cache_commands(sub, _uuid)  # cache policy|show|purge (issue 14)
    return parser


def _open(settings: Settings) -> Any:

    return open_application(settings.database_url, settings.data_dir)


def run_command(settings: Settings, command: c.Command) -> int:
    from gateway.write_locks import locks_for  # psycopg: a no-op on the embedded SQLite store

    app = _open(settings)
    # Under the serving writers' cross-process locks (PostgreSQL): a top-up never collides
    # with a busy gateway's writes to the same Account.
    locks = locks_for(settings.database_url)
    try:
        outcome = run_now(app, command, locks=locks)
    except DomainError as error:
        return fail(error.code, error.message)
    finally:
        if locks is not None:
            locks.close()
        app.close()
    emit(
        {**outcome.value, "position": outcome.position}
        if isinstance(outcome.value, dict)
        else outcome.value
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    command = args.command
    if is_read_command(args):
        return run_read_command(settings, args)
    if command == "project" and args.action != "create":
        return project_admin(settings, args)
    if command == "provider-key":
        return provider_key_admin(settings, args)
    if command == "fx" and args.action == "import":
        return fx_import(settings, args)
    if command in ADMIN_BUILDERS:
        try:
            admin_command = ADMIN_BUILDERS[command](settings, args)
        except DomainError as error:
            return fail(error.code, error.message)
        return run_command(settings, admin_command)
    if command == "actor-token":
        secret = settings.actor_token_secret
        if not secret:
            return fail(
                "actor_tokens_disabled", "set LEDGERGATE_ACTOR_TOKEN_SECRET to issue actor tokens"
            )
        from gateway.auth import issue_actor_token

        token = issue_actor_token(secret.encode(), args.project, args.actor, args.ttl_seconds)
        emit({"actor_token": token, "actor": args.actor, "project_id": str(args.project)})
        return 0
    if command == "serve":
        return serve(settings, args)
    if command == "demo":
        return demo(settings, args.host, args.port, smoke=args.smoke)
    if command == "projections" and args.action == "run" and args.source == "kafka":
        return projections_from_kafka(settings, args)
    if command == "projections":
        return projections(settings, args)
    if command == "relay":
        return relay_run(settings, args)
    if command == "sweep":
        return sweep(settings, args.grace_seconds)
    if command in ("ledger", "reconcile"):
        return finance(settings, args)
    if command in ("audit", "verify"):
        return run_audit_command(settings, args)
    if command == "cache":
        return run_cache_command(settings, args)
    return fail("unknown_command", command)


def fx_import(settings: Settings, args: argparse.Namespace) -> int:

    try:
        with open(args.file, "rb") as handle:
            content = handle.read()
    except OSError as error:
        return fail("invalid_request", f"cannot read {args.file}: {error.strerror}")
    try:
        days = parse_ecb_csv(content)
    except DomainError as error:
        return fail(error.code, error.message)
    rows = fx_rows(days, since=args.since)
    status = run_command(settings, c.ImportFxRates(rows=tuple(rows)))
    if status == 0 and days:
        print(
            f"ECB rates of {days[0].day} to {days[-1].day}: {len(rows)} rows",
            file=sys.stderr,
        )
    return status


def _project_routing(settings: Settings, project_id: UUID | None) -> ProjectRouting | None:
    """A project's custom models, read from the store (None without a project)."""
    if project_id is None:
        return None
    app = _open(settings)
    try:
        found = app.repository.get(ProjectRouting.create_id(str(project_id)))
    except AggregateNotFoundError:
        return None
    finally:
        app.close()
    return found if isinstance(found, ProjectRouting) else None


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed arguments as admin input: the field names of the HTTP bodies (argparse
    already typed the values; `--project` is `project_id` there)."""
    fields = vars(args)
    return {**fields, "project_id": fields.get("project")}


def _key(settings: Settings, args: argparse.Namespace) -> Command:
    if args.action == "create":
        return admin_commands.create_key(_fields(args))
    if args.action == "set-downgrade":
        threshold = None if args.clear else args.threshold
        return admin_commands.set_key_downgrade_threshold(args.key, {"threshold": threshold})
    return admin_commands.revoke_key(args.key, _fields(args))


def _set_price(settings: Settings, args: argparse.Namespace) -> Command:
    routing = _project_routing(settings, args.project)
    return admin_commands.set_price(Catalog.shipped(), routing, _fields(args))


def _model(settings: Settings, args: argparse.Namespace) -> Command:
    if args.action == "add":
        with open(args.file, "rb") as handle:
            entry = tomllib.load(handle)
        return admin_commands.add_custom_model(args.project, entry)
    return admin_commands.add_custom_endpoint(args.project, _fields(args))


# `ledgergate <command>` → the builder of its command (gateway/admin_commands.py, shared with
# the admin HTTP API). `fx import` is dispatched before this table.
ADMIN_BUILDERS: dict[str, Callable[[Settings, argparse.Namespace], Command]] = {
    "project": lambda settings, args: admin_commands.create_project(
        settings.actor_token_secret, _fields(args)
    ),
    "key": _key,
    "topup": lambda settings, args: admin_commands.top_up(_fields(args)),
    "price": _set_price,
    "model": _model,
    "fx": lambda settings, args: admin_commands.set_fx_rate(_fields(args)),
}
PROJECT_SETTERS = {
    "set-plan": admin_commands.set_plan,
    "set-tier": admin_commands.set_tier,
    "set-fee": admin_commands.set_fee_rate,
}


def project_admin(settings: Settings, args: argparse.Namespace) -> int:
    return run_command(settings, PROJECT_SETTERS[args.action](args.project, _fields(args)))


def provider_key_admin(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "remove":
        return run_command(
            settings,
            admin_commands.remove_provider_key(args.project, {"provider": args.provider}),
        )
    try:
        with open(args.api_key_file, encoding="utf-8") as handle:
            api_key = handle.read().strip()
    except OSError as error:
        return fail("invalid_request", f"cannot read --api-key-file: {error.strerror}")
    try:
        command = admin_commands.set_provider_key(
            settings, args.project, {"provider": args.provider, "api_key": api_key}
        )
    except GatewayError as error:
        return fail(error.code, error.message)
    except DomainError as error:
        return fail(error.code, error.message)
    return run_command(settings, command)


def serve(settings: Settings, args: argparse.Namespace) -> int:
    """`serve`: gateway/workers.py `serve` with the parsed options; its refusal is an error."""
    from gateway import workers as serving

    try:
        return serving.serve(settings, args.host, args.port, args.workers, args.projection_worker)
    except serving.WorkersRefused as error:
        return fail("invalid_workers", str(error))


def projections(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "run" and not getattr(args, "once", False):
        heap.tune_collector()  # a long-running process (gateway/heap.py)
    app = open_application(settings.database_url, settings.data_dir)
    store = ReadStore(settings.database_url, settings.data_dir)
    store.migrate()

    views = default_views()
    if args.action == "run" and args.view:
        views = [view for view in views if view.name in args.view]
    runner = ProjectionRunner(app, store, views)
    audit: AuditService | None = None
    try:
        # `projections run` also keeps the tamper-evident log: it is the one process that
        # writes the views beside N serving processes, which then only read the stored tree.
        if args.action == "run" and settings.audit.enabled:
            try:
                audit = AuditService(settings.audit, app, store)
            except AuditConfigError as error:
                return fail("audit_config", str(error))
        if args.action == "dead-letters":
            rows = list_dead_letters(store, view=args.view, limit=args.limit)
            emit({"dead_letters": rows, "count": len(rows)})
            return 0
        if args.action == "run" and args.once:
            position = runner.catch_up()
            tree_size = audit.merkle.catch_up() if audit is not None else None
            emit({"source": "log", "position": position, "audit_tree_size": tree_size})
            return 0
        if args.action == "rebuild":
            with progress_bar("replaying the event log") as advance:
                runner.progress = advance
                position = runner.rebuild(args.view)
            emit(
                {
                    "rebuilt": [
                        v.name for v in runner.views if not args.view or v.name in args.view
                    ],
                    "position": position,
                }
            )
            return 0
        print("following the event log; Ctrl-C to stop", file=sys.stderr)
        runner.progress = None
        heap.settle_startup_heap()  # the long-running worker: its startup heap, frozen
        runner.start()
        if audit is not None:
            audit.start()

        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        if audit is not None:
            audit.stop()
        runner.stop()
        store.close()
        app.close()


def _stop_on_signals() -> Any:
    """SIGTERM/SIGINT end the loop after the batch in hand (its position stored or not)."""

    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    return stop


def relay_run(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.kafka_settings import KafkaConfigError
    from gateway.relay import OutboxRelay

    try:
        kafka = settings.kafka
        kafka.require_bootstrap()
    except KafkaConfigError as error:
        return fail("kafka_not_configured", str(error))
    app = open_application(settings.database_url, settings.data_dir)
    store = ReadStore(settings.database_url, settings.data_dir)
    try:
        store.migrate()
        relay = OutboxRelay(app.recorder, store, kafka)
        stop = _stop_on_signals()
        if not args.once:
            print(
                f"publishing the event log to Kafka topic {kafka.topic}; Ctrl-C to stop",
                file=sys.stderr,
            )
        position = relay.run(stop, once=args.once)
        emit(
            {
                "relay": relay.name,
                "topic": kafka.topic,
                "position": position,
                "published": relay.stats.published,
                "batches": relay.stats.batches,
                "failures": relay.stats.failures,
            }
        )
        return 0
    finally:
        store.close()
        app.close()


def projections_from_kafka(settings: Settings, args: argparse.Namespace) -> int:
    """`projections run --source kafka`: build the read models from the relay's topic. Needs
    no event store: a downstream system runs it against a database of its own."""
    from gateway.kafka_feed import FeedError, KafkaFeed
    from gateway.kafka_settings import KafkaConfigError

    try:
        kafka = settings.kafka
        kafka.require_bootstrap()
    except KafkaConfigError as error:
        return fail("kafka_not_configured", str(error))
    views = [view for view in default_views() if not args.view or view.name in args.view]
    if not views:
        return fail("invalid_request", f"no such view: {', '.join(args.view)}")
    store = ReadStore(settings.database_url, settings.data_dir)
    try:
        store.migrate()
        feed = KafkaFeed(store, views, kafka)
        if not args.once:
            print(f"projecting from Kafka topic {kafka.topic}; Ctrl-C to stop", file=sys.stderr)
        try:
            position = feed.run(_stop_on_signals(), once=args.once)
        except FeedError as error:
            return fail("kafka_feed_refused", str(error))
        emit(
            {
                "source": "kafka",
                "topic": kafka.topic,
                "views": [view.name for view in views],
                "position": position,
                "messages": feed.applied,
            }
        )
        return 0
    finally:
        store.close()


def sweep(settings: Settings, grace_s: float | None) -> int:
    from gateway.bootstrap import build_services
    from gateway.sweeper import sweep_once

    services = build_services(settings)
    services.start()
    try:
        swept = sweep_once(services, grace_s)
        emit({"swept": len(swept), "requests": swept})
    finally:
        services.close()
    return 0


def finance(settings: Settings, args: argparse.Namespace) -> int:
    """`ledger balance`, `ledger export` and `reconcile`.

    They use polars (reconciliation/), imported in the helpers below and only there, so the
    gateway server never loads it: the one place the gateway layer reaches into
    reconciliation/. The ledger-entries and reconciliations views are brought up to date
    first, so the answer reflects every event recorded before the command started.
    """

    if args.command == "reconcile" and args.adjust and args.project is None:
        return fail("invalid_request", "--adjust needs --project: the project to adjust")
    if args.command == "reconcile" and args.project is not None and not args.adjust:
        return fail("invalid_request", "--project is only used with --adjust")
    app = open_application(settings.database_url, settings.data_dir)
    store = ReadStore(settings.database_url, settings.data_dir)
    try:
        store.migrate()

        with progress_bar("bringing the ledger views up to date") as advance:
            runner = ProjectionRunner(
                app, store, [LedgerEntriesView(), ReconciliationsView()], progress=advance
            )
            runner.catch_up()
        if args.command == "ledger" and args.action == "balance":
            return _ledger_balance(store, args)
        if args.command == "ledger":
            return _ledger_export(store, args)
        return _reconcile(app, store, args)
    except DomainError as error:
        return fail(error.code, error.message)
    finally:
        store.close()
        app.close()


def _ledger_balance(store: Any, args: argparse.Namespace) -> int:
    from reconciliation.sources import balance_from_store

    balance, position = balance_from_store(store, str(args.project), args.as_of)
    emit({"object": "balance_as_of", **balance.to_dict(), "as_of_position": position})
    return 0


def _ledger_export(store: Any, args: argparse.Namespace) -> int:
    from reconciliation.sources import export_store

    output = args.output or f"ledger-entries.{args.format}"
    position = tracked_position(store, "ledger_entries")

    with progress_bar(f"exporting ledger entries to {output}") as advance:
        path, rows = export_store(
            store, args.format, output, progress=lambda done: advance(done, None)
        )
    emit({"format": args.format, "path": str(path), "rows": rows, "as_of_position": position})
    return 0


def _reconcile(app: Any, store: Any, args: argparse.Namespace) -> int:
    from reconciliation.invoices import read_invoice
    from reconciliation.reconcile import reconcile, render_table
    from reconciliation.recording import record_command
    from reconciliation.sources import entries_for_reconcile

    aliases: dict[str, str] = {}
    for pair in args.model_aliases:
        name, separator, model = pair.partition("=")
        if not separator or not name.strip() or not model.strip():
            return fail("invalid_request", f"--model-alias must be NAME=MODEL, got {pair[:80]!r}")
        aliases[name.strip()] = model.strip()
    invoice = read_invoice(args.invoice, layout=args.layout)
    entries, position = entries_for_reconcile(store, args.provider, args.month)
    report = reconcile(
        entries,
        invoice,
        args.provider,
        args.month,
        args.tolerance,
        relative_tolerance=args.relative_tolerance,
        model_aliases=aliases,
    )
    print(render_table(report), file=sys.stderr)
    outcome = run_now(
        app, record_command(report, adjust_project_id=args.project if args.adjust else None)
    )
    emit(
        {
            **outcome.value,  # type: ignore[dict-item]
            "provider": report.provider,
            "month": report.month,
            "currency": report.currency,
            "totals": report.totals.to_dict(),
            "discrepancies": [line.to_dict() for line in report.discrepancies],
            "ledger_as_of_position": position,
            "position": outcome.position,
        }
    )
    return 0


def demo(settings: Settings, host: str, port: int, smoke: bool) -> int:
    """The embedded default end to end: SQLite under ./.ledgergate, the simulated upstream
    unless an OpenAI key is configured, a demo project with a key and a balance."""
    from gateway.serving import BackgroundServer
    from gateway.simulator import create_simulator_app

    env_overrides: dict[str, str] = {}
    simulator = None
    simulated = [p for p in DEMO_SIMULATED_PROVIDERS if p not in settings.provider_api_keys]
    if simulated:
        # These four speak the OpenAI wire format, so one simulated upstream stands in for
        # each provider that has no key: `auto`, `eu-strict` (Mistral) and named models work.
        simulator = BackgroundServer(create_simulator_app()).start()
        for provider in simulated:
            env_overrides[f"LEDGERGATE_{provider.upper()}_BASE_URL"] = simulator.base_url + "/v1"
    if not settings.admin_token:
        env_overrides["LEDGERGATE_ADMIN_TOKEN"] = "lg_admin_demo"
    settings = Settings.from_env({**os.environ, **env_overrides})
    app = _open(settings)
    now = datetime.now(UTC)
    project = run_now(app, c.CreateProject(name="demo", currency="USD")).value
    project_id = UUID(project["project_id"])  # type: ignore[index]
    key = run_now(app, c.CreateApiKey(project_id=project_id)).value
    run_now(
        app,
        c.TopUp(
            project_id=project_id,
            amount=Decimal("25.00"),
            currency="USD",
            reference=f"demo-{project_id}",
        ),
    )
    for base, rate in DEMO_FX_TO_USD:
        run_now(
            app,
            c.SetFxRate(
                base=base,
                quote="USD",
                rate=Decimal(rate),
                effective_from=now - timedelta(days=1),
                source="demo",
            ),
        )
    for model, price_in, price_out in DEMO_PRICES:
        run_now(
            app,
            c.SetPrice(
                model=model,
                input_per_mtok=Decimal(price_in),
                output_per_mtok=Decimal(price_out),
                currency="USD",
                effective_from=now - timedelta(days=1),
                source=PRICE_SOURCE_OPERATOR,  # the demo's operator sets them
            ),
        )
    app.close()
    api_key = key["api_key"]  # type: ignore[index]
    base = f"http://{host}:{port}"
    print(
        "\nLedgergate demo\n"
        f"  store:     {'SQLite under ' + settings.data_dir if not settings.database_url else 'PostgreSQL'}\n"
        f"  upstream:  {'simulated (' + ', '.join(simulated) + ')' if simulator else 'configured providers'}\n"
        f"  project:   {project_id} (USD, balance 25.00)\n"
        f"  api key:   {api_key}\n\n"
        "Try:\n"
        f"  curl -s {base}/v1/chat/completions -H 'Authorization: Bearer {api_key}' "
        "-H 'X-User-Id: alice' -H 'Content-Type: application/json' "
        '-d \'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello!"}]}\'\n'
        f"  curl -s {base}/v1/chat/completions -H 'Authorization: Bearer {api_key}' "
        "-H 'X-User-Id: alice' -H 'Content-Type: application/json' "
        '-d \'{"model": "eu-strict:small", "stream": true, "messages": [{"role": "user", '
        '"content": "I am Anna Svensson, IBAN SE4550000000058398257466"}], '
        '"pii_policy": {"enabled": true, "action": "pseudonymize", "rehydrate_response": true}}\'\n'
        f"  curl -s {base}/v1/billing/balance -H 'Authorization: Bearer {api_key}'\n"
        f"  curl -s {base}/v1/data/audit -H 'Authorization: Bearer {api_key}'\n",
        file=sys.stderr,
        flush=True,
    )
    from gateway.http.app import create_app  # the CLI loads the app only to serve it

    if smoke:
        return _demo_smoke(settings, api_key)
    import uvicorn

    try:
        uvicorn.run(
            create_app(settings), host=host, port=port, log_level="warning", access_log=False
        )
    finally:
        if simulator is not None:
            simulator.stop()
    return 0


def _demo_smoke(settings: Settings, api_key: str) -> int:
    import httpx

    from gateway.http.app import create_app
    from gateway.serving import BackgroundServer

    with BackgroundServer(create_app(settings)) as server:
        headers = {"Authorization": f"Bearer {api_key}", "X-User-Id": "demo-user"}
        body = {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Hello from the demo"}],
        }
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            reply = client.post("/v1/chat/completions", json=body, headers=headers)
            streamed = client.post(
                "/v1/chat/completions", json={**body, "stream": True}, headers=headers
            )
            position = reply.headers.get("x-lg-ledger-position", "0")
            # The stream is charged after its last byte (no position header can say so): the
            # settled balance is the one with nothing pending, within a bound.
            for _ in range(DEMO_SETTLE_POLLS):
                balance = client.get(
                    "/v1/billing/balance", params={"min_position": position}, headers=headers
                ).json()
                audit = client.get("/v1/data/audit", headers=headers).json()
                settled = Decimal(str(balance.get("pending", "0"))) == 0
                if settled and len(audit.get("data", [])) >= 2:
                    break
                time.sleep(0.1)
        emit(
            {
                "chat_status": reply.status_code,
                "request_id": reply.headers.get("x-request-id"),
                "actual_cost": reply.headers.get("x-lg-actual-cost"),
                "stream_status": streamed.status_code,
                "stream_done": streamed.text.rstrip().endswith("data: [DONE]"),
                "balance": balance,
                "audit_rows": len(audit.get("data", [])),
            }
        )
        return 0 if reply.status_code == 200 and streamed.status_code == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
