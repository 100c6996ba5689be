"""`ledgergate cache policy|show|purge`: a project's response-cache policy from the command
line (the same input rules as the admin API: gateway/admin_commands.py), what the
project holds in the store, and an immediate purge of expired entries.

    ledgergate cache policy --project ID --default-mode always --share-across-keys \\
        --semantic-threshold 0.92
    ledgergate cache show --project ID
    ledgergate cache purge
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any
from uuid import UUID

from domain.application import open_application
from domain.cache_policy import CACHE_MODES, ProjectCachePolicy, policy_of
from domain.clock import SystemClock
from domain.errors import DomainError, UnknownProject
from domain.project import Project
from domain.writer import run_now
from gateway.admin_commands import set_cache_policy
from gateway.byok import SECRET_ENV
from gateway.config import Settings
from gateway.errors import GatewayError
from gateway.jsonable import jsonable
from projections.db import ReadStore

if TYPE_CHECKING:
    from gateway.response_cache import ResponseCacheStore


def add_cache_commands(sub: Any, uuid_type: Any) -> None:
    cache = sub.add_parser("cache", help="the response cache").add_subparsers(
        dest="action", required=True
    )
    policy = cache.add_parser(
        "policy", help="set a project's cache policy (fields left out stay as they are)"
    )
    policy.add_argument("--project", type=uuid_type, required=True)
    policy.add_argument("--default-mode", choices=CACHE_MODES, help="used without X-LG-Use-Cache")
    share = policy.add_mutually_exclusive_group()
    share.add_argument(
        "--share-across-keys",
        dest="share",
        action="store_const",
        const=True,
        help=f"the project's keys share entries (needs {SECRET_ENV})",
    )
    share.add_argument("--no-share-across-keys", dest="share", action="store_const", const=False)
    policy.add_argument("--semantic-threshold", help='a cosine similarity from 0.5 to 1, or "off"')
    policy.add_argument("--semantic-model", help="an embedding model the project's tier allows")
    policy.add_argument("--set-by", default="admin-cli")
    show = cache.add_parser("show", help="a project's cache policy and what it holds")
    show.add_argument("--project", type=uuid_type, required=True)
    cache.add_parser("purge", help="delete expired entries now (writes also purge them)")


def _emit(payload: Any) -> None:
    print(json.dumps(jsonable(payload), sort_keys=True))


def _fail(code: str, message: str) -> int:
    _emit({"error": {"code": code, "message": message}})
    return 1


def run_cache_command(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "purge":
        return _purge(settings)
    app = open_application(settings.database_url, settings.data_dir)
    try:
        if args.action == "policy":
            fields = {
                "default_mode": args.default_mode,
                "share_across_keys": args.share,
                "semantic_threshold": args.semantic_threshold,
                "semantic_model": args.semantic_model,
            }
            command = set_cache_policy(
                args.project,
                {name: value for name, value in fields.items() if value is not None},
                sharing_available=settings.server_secret is not None,
                set_by=args.set_by,
            )
            outcome = run_now(app, command)
            value = outcome.value if isinstance(outcome.value, dict) else {}
            _emit({**value, "position": outcome.position})
            return 0
        return _show(settings, app, args.project)
    except (DomainError, GatewayError) as error:
        return _fail(error.code, error.message)
    finally:
        app.close()


def _show(settings: Settings, app: Any, project_id: UUID) -> int:
    try:
        project = app.repository.get(project_id)
    except Exception:
        project = None
    if not isinstance(project, Project):
        raise UnknownProject(f"project {project_id} not found")
    aggregate_id = ProjectCachePolicy.create_id(str(project_id))
    try:
        aggregate = app.repository.get(aggregate_id)
    except Exception:  # never set: the default policy
        aggregate = None
    store = _store(settings)
    try:
        usage = store.project_usage_sync(str(project_id))
    finally:
        store.store.close()
    _emit({"project_id": str(project_id), **policy_of(aggregate).as_dict(), "store": usage})
    return 0


def _store(settings: Settings) -> ResponseCacheStore:
    # The store (and the semantic cache's numpy under it) loads for `show` and `purge`
    # only: `cache policy` is an admin command and starts as fast as the others.
    from gateway.response_cache import ResponseCacheStore

    read_store = ReadStore(settings.database_url, settings.data_dir)
    read_store.migrate()
    return ResponseCacheStore(
        read_store,
        SystemClock(),
        entries_max=settings.response_cache_entries_max,
        bytes_max=settings.response_cache_bytes_max,
        project_entries_max=settings.response_cache_project_entries_max,
        project_bytes_max=settings.response_cache_project_bytes_max,
    )


def _purge(settings: Settings) -> int:
    store = _store(settings)
    try:
        purged = store.purge_expired_sync()
    finally:
        store.store.close()
    _emit({"purged": purged})
    return 0
