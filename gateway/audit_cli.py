"""`ledgergate audit export|status|checkpoint` and `ledgergate verify` (issue 13).

`verify DIR --public-key KEY` checks an export offline; `verify --live` re-hashes the
store against its latest signed checkpoint and, on a divergence, records an alarm event
and logs an error. Both print progress on stderr, one JSON object on stdout, and exit 1
on the first divergence, naming its position and kind.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from domain.application import open_application
from gateway.audit import AuditConfigError, live_check, load_signer
from gateway.config import Settings
from projections.audit_tree import LogInconsistent, MerkleLog
from projections.audit_verify import VerifyReport, export, verify_export
from projections.db import ReadStore
from projections.signed_note import NoteError, Verifier


def add_audit_commands(sub: Any, audit: Any) -> None:
    """Adds `audit export|status|checkpoint` to the `audit` subparsers (which also hold the
    read command `audit show REQUEST_ID`, gateway/cli_reads.py) and `verify`."""
    audit_export = audit.add_parser(
        "export", help="write every event with its leaf bytes, and every signed checkpoint"
    )
    audit_export.add_argument("--output", required=True, help="directory to write")
    audit.add_parser("status", help="the tree size, the latest checkpoint and the public key")
    audit.add_parser("checkpoint", help="hash what is new and sign a checkpoint now")

    verify = sub.add_parser(
        "verify",
        help="verify an audit export (or the live store) against the signed checkpoints",
        description="Recomputes every leaf and every checkpoint root, checks each signature "
        "and each consistency step; exits 1 at the first divergence, naming its position and "
        "kind (altered, missing, reordered, inserted, bad_signature, inconsistent).",
    )
    verify.add_argument("directory", nargs="?", help="an export directory")
    verify.add_argument(
        "--public-key",
        dest="public_key",
        help="the log's verifier key (<name>+<hex id>+<base64 key>) or a file holding it",
    )
    verify.add_argument(
        "--live",
        action="store_true",
        help="re-hash the stored events against the latest checkpoint (raises an alarm)",
    )


def _emit(payload: Any) -> None:
    print(json.dumps(payload, sort_keys=True))


def _fail(code: str, message: str) -> int:
    _emit({"error": {"code": code, "message": message}})
    return 1


def _progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def _open(settings: Settings, *, create_key: bool) -> tuple[Any, Any, MerkleLog, Any]:
    audit_settings = settings.audit
    signer = load_signer(audit_settings, create=create_key)
    app = open_application(settings.database_url, settings.data_dir)
    store = ReadStore(settings.database_url, settings.data_dir)
    store.migrate()
    merkle = MerkleLog(
        app,
        store,
        signer=signer,
        every_events=audit_settings.every_events,
        interval_s=audit_settings.interval_s,
    )
    return app, store, merkle, signer


def _read_public_key(text: str) -> str:
    """The key string itself, or the contents of the file it names."""
    path = Path(text)
    return path.read_text().strip() if path.is_file() else text.strip()


def _report(report: VerifyReport, elapsed_s: float) -> int:
    payload = report.as_dict()
    payload["elapsed_s"] = round(elapsed_s, 3)
    if report.divergence is not None:
        divergence = report.divergence
        where = (
            f"position {divergence.position}"
            if divergence.position is not None
            else f"checkpoint size {divergence.checkpoint_size}"
        )
        print(f"verify: FAILED at {where}: {divergence.kind}: {divergence.detail}", file=sys.stderr)
        _emit(payload)
        return 1
    print(
        f"verify: OK: {report.leaves:,} leaves, {report.checkpoints} checkpoints, "
        f"{report.verified_size:,} leaves under a verified signature"
        + (
            f", {report.unhashed_tail:,} newer events not yet covered"
            if report.unhashed_tail
            else ""
        ),
        file=sys.stderr,
    )
    _emit(payload)
    return 0


def run_audit_command(settings: Settings, args: argparse.Namespace) -> int:
    try:
        if args.command == "verify":
            return _verify(settings, args)
        return _audit(settings, args)
    except (AuditConfigError, NoteError, LogInconsistent) as error:
        return _fail("audit_error", str(error))


def _audit(settings: Settings, args: argparse.Namespace) -> int:
    app, store, merkle, signer = _open(settings, create_key=args.action == "checkpoint")
    try:
        if args.action == "export":
            started = time.monotonic()
            manifest = export(merkle, Path(args.output), _progress)
            manifest["elapsed_s"] = round(time.monotonic() - started, 3)
            manifest["output"] = str(Path(args.output))
            _emit(manifest)
            return 0
        if args.action == "checkpoint":
            size = merkle.catch_up()
            checkpoint = merkle.checkpoint()
            if checkpoint is None:
                return _fail("checkpoint_not_found", "the log is empty: nothing to sign")
            _emit(
                {
                    "size": checkpoint.size,
                    "tree_size": size,
                    "root_hash": checkpoint.root.hex(),
                    "note": checkpoint.note,
                    "public_key": checkpoint.vkey,
                }
            )
            return 0
        latest = merkle.latest_checkpoint()
        _emit(
            {
                "tree_size": merkle.size(),
                "checkpoints": len(merkle.checkpoints()),
                "latest_checkpoint": None
                if latest is None
                else {
                    "size": latest.size,
                    "root_hash": latest.root.hex(),
                    "note": latest.note,
                    "created_at": latest.created_at,
                },
                "public_key": signer.verifier.vkey()
                if signer
                else (latest.vkey if latest else None),
            }
        )
        return 0
    finally:
        store.close()
        app.close()


def _verify(settings: Settings, args: argparse.Namespace) -> int:
    if args.live == bool(args.directory):
        return _fail("invalid_request", "give an export DIRECTORY or --live (one of the two)")
    if args.live:
        app, store, merkle, signer = _open(settings, create_key=False)
        try:
            if args.public_key:
                verifier = Verifier.parse(_read_public_key(args.public_key))
            elif signer is not None:
                verifier = signer.verifier
            else:
                return _fail("invalid_request", "no signing key here: pass --public-key")
            merkle.catch_up()
            started = time.monotonic()
            report = live_check(merkle, verifier, app)
            if report.notes:
                _progress("; ".join(report.notes))
            return _report(report, time.monotonic() - started)
        finally:
            store.close()
            app.close()
    if not args.public_key:
        return _fail("invalid_request", "verify DIR needs --public-key (the log's verifier key)")
    vkey = _read_public_key(args.public_key)
    Verifier.parse(vkey)  # a malformed key is a usage error, before reading anything
    directory = Path(args.directory)
    if not directory.is_dir():
        return _fail("invalid_request", f"{directory} is not a directory")
    started = time.monotonic()
    return _report(verify_export(directory, vkey, _progress), time.monotonic() - started)
