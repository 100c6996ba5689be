"""Export of the tamper-evident log, and the verifier that checks an export (or the live
store) against the signed checkpoints.

Export directory (`ledgergate audit export --output DIR`):

- `events.jsonl`: one JSON object per line, in log order. A leaf of the tree:
  `{"leaf_index", "position", "aggregate_id", "version", "topic", "state" (base64),
  "leaf" (base64 leaf bytes), "leaf_hash" (hex, as the tree recorded it)}`. A leaf whose
  event is no longer in the store: `{"leaf_index", "position", "leaf_hash", "missing": true}`.
  A stored event the tree has no leaf for (newer than the tree, or inserted behind its
  back): the record with `"leaf_index": null`.
- `checkpoints.jsonl`: every signed checkpoint, ascending size: `{"size", "root" (hex),
  "note" (the signed note text), "consistency" (hex hashes: the RFC 9162 consistency proof
  from the previous checkpoint)}`.
- `manifest.json`: counts, origin, the log's verifier key at export time (informational:
  `verify` trusts only the key given on its command line).

What the verifier checks, stopping at the first divergence:
1. every checkpoint note is signed by the given key, its origin is the key name, sizes
   grow, and each is consistent with the one before (the consistency proof verifies);
2. every leaf line: leaf indexes contiguous from 0, positions increasing, the leaf bytes
   recomputed from the record's fields equal the exported leaf bytes and hash to the
   recorded leaf hash;
3. the recorded leaf hashes produce each checkpoint's signed root at its size, so the
   per-leaf hashes of step 2 are themselves authenticated.
A record that does not match its leaf is classified from the leaves around it: the event
of another recorded position (reordered), the recorded event missing and the later ones
moved up (missing), an event the log never recorded pushed in (inserted), or none of
these (altered).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from domain.audit_log import (
    LEAF_FORMAT_VERSION,
    LeafFormatError,
    StoredRecord,
    export_record,
    leaf_bytes,
    leaf_hash,
    record_from_export,
)
from domain.merkle import Frontier, verify_consistency
from projections.audit_tree import MerkleLog, StoredCheckpoint, record_of
from projections.signed_note import NoteError, Verifier, open_checkpoint

EXPORT_FORMAT = "ledgergate-audit-export/1"
EVENTS_FILE = "events.jsonl"
CHECKPOINTS_FILE = "checkpoints.jsonl"
MANIFEST_FILE = "manifest.json"
NOTIFICATIONS_PER_READ = 2000
# How far past a mismatch the classifier looks for the moved event: a swap with an event
# further away is still caught at the right position, but reported as "altered".
LOOKAHEAD_LINES = 1024
PROGRESS_EVERY_LINES = 100_000

Progress = Callable[[str], None]


# --- the lines: from the store ---------------------------------------------------------------


def _record_line(
    record: StoredRecord, leaf_index: int | None, recorded: bytes | None
) -> dict[str, Any]:
    line = export_record(record)
    leaf = leaf_bytes(record)
    line["leaf"] = base64.b64encode(leaf).decode("ascii")
    line["leaf_index"] = leaf_index
    if recorded is not None:
        line["leaf_hash"] = recorded.hex()
    return line


def store_lines(merkle: MerkleLog, *, leaves_max: int | None = None) -> Iterator[dict[str, Any]]:
    """The export lines of the live store: tree leaves merged with stored events by position.

    `leaves_max` stops after that many leaves (and the events before the next leaf)."""
    recorder = merkle.app.recorder
    leaves = merkle.iter_leaves()
    last_position = 0

    def events() -> Iterator[Any]:
        nonlocal last_position
        while True:
            batch = recorder.select_notifications(
                start=last_position, limit=NOTIFICATIONS_PER_READ, inclusive_of_start=False
            )
            if not batch:
                return
            last_position = int(batch[-1].id)
            yield from batch

    event_iter = events()

    def next_event() -> Any | None:
        return next(event_iter, None)

    emitted = 0
    event = next_event()
    for leaf in leaves:
        if leaves_max is not None and emitted >= leaves_max:
            break
        while event is not None and int(event.id) < leaf.position:
            yield _record_line(record_of(event), None, None)
            event = next_event()
        if event is not None and int(event.id) == leaf.position:
            yield _record_line(record_of(event), leaf.leaf_index, leaf.leaf_hash)
            event = next_event()
        else:
            yield {
                "leaf_index": leaf.leaf_index,
                "position": leaf.position,
                "leaf_hash": leaf.leaf_hash.hex(),
                "missing": True,
            }
        emitted += 1
    if leaves_max is not None and emitted >= leaves_max:
        return
    while event is not None:
        yield _record_line(record_of(event), None, None)
        event = next_event()


def checkpoint_lines(merkle: MerkleLog) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    previous: StoredCheckpoint | None = None
    for checkpoint in merkle.checkpoints():
        proof = merkle.consistency_proof(previous.size, checkpoint.size) if previous else []
        lines.append(
            {
                "size": checkpoint.size,
                "root": checkpoint.root.hex(),
                "note": checkpoint.note,
                "consistency": [value.hex() for value in proof],
                "created_at": checkpoint.created_at,
            }
        )
        previous = checkpoint
    return lines


def export(
    merkle: MerkleLog, output: Path, progress: Progress | None = None, *, catch_up: bool = True
) -> dict[str, Any]:
    """Write the export directory; streams the events (bounded memory). By default the tree
    first hashes every durable event not yet in it, so the export is complete."""
    if catch_up:
        merkle.catch_up()
    output.mkdir(parents=True, exist_ok=True)
    checkpoints = checkpoint_lines(merkle)
    counts = {"leaves": 0, "events": 0, "missing": 0, "unhashed": 0}
    with open(output / EVENTS_FILE, "w", encoding="utf-8") as handle:
        for number, line in enumerate(store_lines(merkle), start=1):
            handle.write(json.dumps(line, separators=(",", ":")) + "\n")
            if line.get("missing"):
                counts["missing"] += 1
            else:
                counts["events"] += 1
            if line.get("leaf_index") is None:
                counts["unhashed"] += 1
            else:
                counts["leaves"] += 1
            if progress is not None and number % PROGRESS_EVERY_LINES == 0:
                progress(f"exported {number:,} events")
    with open(output / CHECKPOINTS_FILE, "w", encoding="utf-8") as handle:
        for line in checkpoints:
            handle.write(json.dumps(line, separators=(",", ":")) + "\n")
    latest = checkpoints[-1] if checkpoints else None
    manifest = {
        "format": EXPORT_FORMAT,
        "leaf_format_version": LEAF_FORMAT_VERSION,
        "origin": merkle.origin,
        "public_key": merkle.checkpoints()[-1].vkey if checkpoints else None,
        "checkpoints": len(checkpoints),
        "latest_checkpoint_size": latest["size"] if latest else 0,
        "exported_at": datetime.now(UTC).isoformat(),
        **counts,
    }
    (output / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    if progress is not None:
        progress(f"exported {counts['events']:,} events and {len(checkpoints)} checkpoints")
    return manifest


# --- the verifier ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Divergence:
    kind: str  # altered | missing | reordered | inserted | bad_signature | inconsistent | malformed
    detail: str
    position: int | None = None
    leaf_index: int | None = None
    checkpoint_size: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "position": self.position,
            "leaf_index": self.leaf_index,
            "checkpoint_size": self.checkpoint_size,
            "detail": self.detail,
        }


@dataclass
class VerifyReport:
    leaves: int = 0
    events: int = 0
    checkpoints: int = 0
    verified_size: int = 0  # leaves covered by a checked signed checkpoint
    unhashed_tail: int = 0  # stored events newer than the tree (not covered yet)
    divergence: Divergence | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.divergence is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "leaves": self.leaves,
            "events": self.events,
            "checkpoints": self.checkpoints,
            "verified_size": self.verified_size,
            "unhashed_tail": self.unhashed_tail,
            "divergence": self.divergence.as_dict() if self.divergence else None,
        }


class _Diverged(Exception):
    def __init__(self, divergence: Divergence) -> None:
        super().__init__(divergence.detail)
        self.divergence = divergence


@dataclass(frozen=True)
class _Checked:
    size: int
    root: bytes


def check_checkpoints(lines: Iterable[dict[str, Any]], verifier: Verifier) -> list[_Checked]:
    checked: list[_Checked] = []
    for number, line in enumerate(lines, start=1):
        try:
            size = int(line["size"])
            stated_root = bytes.fromhex(str(line["root"]))
            proof = [bytes.fromhex(value) for value in line.get("consistency", [])]
            note = str(line["note"])
        except (KeyError, TypeError, ValueError) as error:
            raise _Diverged(
                Divergence("malformed", f"checkpoint line {number} is malformed: {error}")
            ) from None
        try:
            checkpoint = open_checkpoint(note, verifier)
        except NoteError as error:
            raise _Diverged(
                Divergence(
                    "bad_signature",
                    f"checkpoint {number} (size {size}) is not signed by {verifier.name}: {error}",
                    checkpoint_size=size,
                )
            ) from None
        if checkpoint.size != size or checkpoint.root != stated_root:
            raise _Diverged(
                Divergence(
                    "altered",
                    f"checkpoint {number}: its line says size {size} root {stated_root.hex()[:16]}… "
                    f"but the signed note says size {checkpoint.size} root {checkpoint.root.hex()[:16]}…",
                    checkpoint_size=size,
                )
            )
        if checked:
            previous = checked[-1]
            if checkpoint.size <= previous.size:
                raise _Diverged(
                    Divergence(
                        "reordered",
                        f"checkpoint {number} (size {checkpoint.size}) does not grow the tree "
                        f"past checkpoint size {previous.size}",
                        checkpoint_size=checkpoint.size,
                    )
                )
            if not verify_consistency(
                previous.size, checkpoint.size, previous.root, checkpoint.root, proof
            ):
                raise _Diverged(
                    Divergence(
                        "inconsistent",
                        f"checkpoint size {checkpoint.size} is not consistent with checkpoint "
                        f"size {previous.size} (the consistency proof fails)",
                        checkpoint_size=checkpoint.size,
                    )
                )
        checked.append(_Checked(checkpoint.size, checkpoint.root))
    return checked


def _hash_at(record: StoredRecord, position: int) -> bytes:
    return leaf_hash(leaf_bytes(replace(record, position=position)))


def _parsed(line: dict[str, Any]) -> tuple[StoredRecord | None, bytes | None]:
    record = None if line.get("missing") else record_from_export(line)
    recorded = bytes.fromhex(line["leaf_hash"]) if line.get("leaf_hash") else None
    return record, recorded


class LogVerifier:
    """Checks a stream of export lines against signed checkpoints (see the module doc)."""

    def __init__(self, verifier: Verifier, progress: Progress | None = None) -> None:
        self.verifier = verifier
        self.progress = progress

    def verify(
        self,
        checkpoint_source: Iterable[dict[str, Any]],
        line_source: Iterable[dict[str, Any]],
        *,
        leaves_expected: int | None = None,
    ) -> VerifyReport:
        report = VerifyReport()
        try:
            checkpoints = check_checkpoints(checkpoint_source, self.verifier)
            report.checkpoints = len(checkpoints)
            self._leaves(iter(line_source), checkpoints, report)
            if leaves_expected is not None and report.leaves < leaves_expected:
                raise _Diverged(
                    Divergence(
                        "missing",
                        f"the tree has {leaves_expected} leaves; only {report.leaves} were read",
                        leaf_index=report.leaves,
                    )
                )
        except _Diverged as diverged:
            report.divergence = diverged.divergence
        return report

    def _leaves(
        self, lines: Iterator[dict[str, Any]], checkpoints: list[_Checked], report: VerifyReport
    ) -> None:
        frontier = Frontier()
        pending = list(reversed(checkpoints))  # next checkpoint to reach at the end
        last_position = 0
        last_checked_size = 0
        first_unhashed: int | None = None
        number = 0
        for line in lines:
            number += 1
            if self.progress is not None and number % PROGRESS_EVERY_LINES == 0:
                self.progress(f"verified {number:,} events")
            try:
                position = line["position"]
                if not isinstance(position, int) or isinstance(position, bool):
                    raise LeafFormatError("position must be an integer")
                leaf_index = line.get("leaf_index")
                record, recorded = _parsed(line)
            except (KeyError, TypeError, ValueError, LeafFormatError) as error:
                raise _Diverged(
                    Divergence("malformed", f"events line {number} is malformed: {error}")
                ) from None
            if position <= last_position:
                raise _Diverged(
                    Divergence(
                        "reordered",
                        f"position {position} comes after position {last_position}: the log order is broken",
                        position=position,
                        leaf_index=leaf_index,
                    )
                )
            if leaf_index is None:  # a stored event the tree has no leaf for
                if record is None:
                    raise _Diverged(Divergence("malformed", f"events line {number} has no record"))
                report.events += 1
                if first_unhashed is None:
                    first_unhashed = position
                last_position = position
                continue
            if first_unhashed is not None:
                raise _Diverged(
                    Divergence(
                        "inserted",
                        f"the event at position {first_unhashed} is not a leaf of the tree, yet "
                        f"leaves follow it (the next at position {position}): it was inserted",
                        position=first_unhashed,
                    )
                )
            if leaf_index != frontier.size:
                kind = "reordered"
                if leaf_index > frontier.size:  # the expected leaf later on, or nowhere
                    later = (
                        following.get("leaf_index")
                        for following in itertools.islice(lines, LOOKAHEAD_LINES)
                    )
                    kind = "reordered" if frontier.size in later else "missing"
                raise _Diverged(
                    Divergence(
                        kind,
                        f"leaf {frontier.size} expected after position {last_position}, "
                        f"found leaf {leaf_index} at position {position}",
                        position=position,
                        leaf_index=frontier.size,
                    )
                )
            if recorded is None or len(recorded) != 32:
                raise _Diverged(
                    Divergence(
                        "malformed", f"events line {number} lacks its leaf hash", position=position
                    )
                )
            if record is None:
                raise _Diverged(
                    Divergence(
                        "missing",
                        f"the event at position {position} (leaf {leaf_index}) is not in the store",
                        position=position,
                        leaf_index=leaf_index,
                    )
                )
            report.events += 1
            recomputed_leaf = leaf_bytes(record)
            exported_leaf = line.get("leaf")
            if exported_leaf is not None:
                try:
                    exported = base64.b64decode(exported_leaf, validate=True)
                except (binascii.Error, ValueError):
                    exported = b""
                if exported != recomputed_leaf:
                    raise _Diverged(
                        Divergence(
                            "altered",
                            f"at position {position}: the exported leaf bytes differ from the record's fields",
                            position=position,
                            leaf_index=leaf_index,
                        )
                    )
            if record.position != position or leaf_hash(recomputed_leaf) != recorded:
                raise _Diverged(self._classify(line, record, recorded, lines))
            frontier.append(recorded)
            report.leaves += 1
            last_position = position
            while pending and pending[-1].size == frontier.size:
                checkpoint = pending.pop()
                if frontier.root() != checkpoint.root:
                    raise _Diverged(
                        Divergence(
                            "altered",
                            f"the leaf hashes of leaves {last_checked_size}..{checkpoint.size - 1} "
                            f"(up to position {position}) do not produce the signed root of "
                            f"checkpoint size {checkpoint.size}: recorded leaf hashes were changed",
                            position=position,
                            checkpoint_size=checkpoint.size,
                        )
                    )
                last_checked_size = checkpoint.size
                report.verified_size = checkpoint.size
        if pending:
            checkpoint = pending[-1]
            raise _Diverged(
                Divergence(
                    "missing",
                    f"checkpoint size {checkpoint.size} covers {checkpoint.size} leaves but only "
                    f"{frontier.size} are present (the last ones, after position {last_position}, are missing)",
                    position=last_position or None,
                    leaf_index=frontier.size,
                    checkpoint_size=checkpoint.size,
                )
            )
        report.unhashed_tail = report.events - report.leaves

    def _classify(
        self,
        line: dict[str, Any],
        record: StoredRecord,
        recorded: bytes,
        lines: Iterator[dict[str, Any]],
    ) -> Divergence:
        position = int(line["position"])
        leaf_index = line.get("leaf_index")
        ahead: list[tuple[int, StoredRecord, bytes]] = []  # the following leaves
        next_record: StoredRecord | None = None  # the following stored event, leaf or not
        for _ in range(LOOKAHEAD_LINES):
            following = next(lines, None)
            if following is None:
                break
            try:
                other, other_recorded = _parsed(following)
            except (KeyError, TypeError, ValueError, LeafFormatError):
                break
            if next_record is None and other is not None:
                next_record = other
            if (
                other is not None
                and other_recorded is not None
                and following.get("leaf_index") is not None
            ):
                ahead.append((int(following["position"]), other, other_recorded))
        for offset, (other_position, other, other_recorded) in enumerate(ahead):
            if _hash_at(record, other_position) == other_recorded:
                swapped = _hash_at(other, position) == recorded
                if offset == 0 and not swapped:
                    return Divergence(
                        "missing",
                        f"the event recorded at position {position} (leaf {leaf_index}) is gone: "
                        f"the one recorded at position {other_position} now stands in its place",
                        position=position,
                        leaf_index=leaf_index,
                    )
                return Divergence(
                    "reordered",
                    f"position {position} holds the event recorded at position {other_position}"
                    + (" (the two were swapped)" if swapped else ""),
                    position=position,
                    leaf_index=leaf_index,
                )
        if next_record is not None and _hash_at(next_record, position) == recorded:
            return Divergence(
                "inserted",
                f"position {position} holds an event the log never recorded; the event recorded "
                f"at position {position} follows it",
                position=position,
                leaf_index=leaf_index,
            )
        return Divergence(
            "altered",
            f"the event at position {position} (leaf {leaf_index}) differs from the one the log "
            f"recorded (leaf hash {recorded.hex()[:16]}…, recomputed {_hash_at(record, position).hex()[:16]}…)",
            position=position,
            leaf_index=leaf_index,
        )


def _json_lines(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as error:
                raise _Diverged(
                    Divergence("malformed", f"{path.name} line {number} is not JSON: {error.msg}")
                ) from None
            if not isinstance(value, dict):
                raise _Diverged(
                    Divergence("malformed", f"{path.name} line {number} is not an object")
                )
            yield value


def verify_export(directory: Path, vkey: str, progress: Progress | None = None) -> VerifyReport:
    verifier = Verifier.parse(vkey)
    checker = LogVerifier(verifier, progress)
    for name in (EVENTS_FILE, CHECKPOINTS_FILE):
        if not (directory / name).is_file():
            report = VerifyReport()
            report.divergence = Divergence("malformed", f"{directory / name} is missing")
            return report
    try:
        return checker.verify(
            _json_lines(directory / CHECKPOINTS_FILE), _json_lines(directory / EVENTS_FILE)
        )
    except _Diverged as diverged:  # raised while reading lines outside verify's own guard
        report = VerifyReport()
        report.divergence = diverged.divergence
        return report


def verify_live(
    merkle: MerkleLog, verifier: Verifier, progress: Progress | None = None
) -> VerifyReport:
    """Re-hash the stored events against the latest signed checkpoint."""
    checkpoints = checkpoint_lines(merkle)
    if not checkpoints:
        report = VerifyReport()
        report.notes.append("no checkpoint yet: nothing to verify against")
        return report
    latest = checkpoints[-1]["size"]
    return LogVerifier(verifier, progress).verify(
        checkpoints, store_lines(merkle, leaves_max=latest), leaves_expected=latest
    )
