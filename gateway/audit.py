"""The tamper-evident log in a running gateway: configuration, the signing key, the tree
follower, the scheduled live check and its alarm.

Configuration (environment or the TOML file):

| variable | default | meaning |
|---|---|---|
| `LEDGERGATE_AUDIT_LOG` | `1` | `0` turns the Merkle log off in this process |
| `LEDGERGATE_AUDIT_LOG_ORIGIN` | `ledgergate.local/audit-log` | checkpoint origin = key name |
| `LEDGERGATE_AUDIT_SIGNING_KEY_FILE` | `<data dir>/audit-signing-key.pem` | Ed25519 key (PKCS8 PEM or 32-byte seed) |
| `LEDGERGATE_CHECKPOINT_EVERY_EVENTS` | `1000` | sign once this many events are unsigned (1..1,000,000) |
| `LEDGERGATE_CHECKPOINT_INTERVAL_S` | `10` | or once this long passed with any unsigned (0.05..86,400) |
| `LEDGERGATE_AUDIT_LIVE_CHECK_INTERVAL_S` | `0` (off) | re-hash the store against the last checkpoint this often (60..604,800) |

Without a configured key file, `serve` creates one at the default path (0600) on first
start and logs that it did, with the public verifier key (never the private key). A key
file that is configured but missing is an error: a typo must not silently start a new key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from domain.audit_alarm import KINDS as ALARM_KINDS
from domain.audit_alarm import AuditIntegrityAlarm
from gateway.periodic import Periodic
from projections.audit_tree import (
    CHECKPOINT_EVERY_EVENTS_BOUNDS,
    CHECKPOINT_EVERY_EVENTS_DEFAULT,
    CHECKPOINT_INTERVAL_S_BOUNDS,
    CHECKPOINT_INTERVAL_S_DEFAULT,
    MerkleLog,
    bounded,
)
from projections.audit_verify import Divergence, VerifyReport, verify_live
from projections.signed_note import (
    NoteError,
    Signer,
    Verifier,
    create_private_key_file,
    load_private_key,
)

log = logging.getLogger("ledgergate.audit")

ORIGIN_DEFAULT = "ledgergate.local/audit-log"
KEY_FILE_DEFAULT = "audit-signing-key.pem"
LIVE_CHECK_INTERVAL_S_BOUNDS = (60.0, 604_800.0)


class AuditConfigError(Exception):
    pass


@dataclass(frozen=True)
class AuditSettings:
    enabled: bool
    origin: str
    key_file: Path
    key_file_configured: bool
    every_events: int
    interval_s: float
    live_check_interval_s: float  # 0: off

    @classmethod
    def from_raw(cls, raw: dict[str, str], data_dir: str) -> AuditSettings:
        def number(name: str, default: float) -> float:
            text = raw.get(name)
            if text is None or not text.strip():
                return default
            try:
                return float(text)
            except ValueError:
                raise AuditConfigError(f"{name} must be a number, not {text!r}") from None

        configured = raw.get("LEDGERGATE_AUDIT_SIGNING_KEY_FILE") or ""
        live = number("LEDGERGATE_AUDIT_LIVE_CHECK_INTERVAL_S", 0.0)
        try:
            every = bounded(
                number("LEDGERGATE_CHECKPOINT_EVERY_EVENTS", CHECKPOINT_EVERY_EVENTS_DEFAULT),
                CHECKPOINT_EVERY_EVENTS_BOUNDS,
                "LEDGERGATE_CHECKPOINT_EVERY_EVENTS",
            )
            interval = bounded(
                number("LEDGERGATE_CHECKPOINT_INTERVAL_S", CHECKPOINT_INTERVAL_S_DEFAULT),
                CHECKPOINT_INTERVAL_S_BOUNDS,
                "LEDGERGATE_CHECKPOINT_INTERVAL_S",
            )
            if live:
                bounded(
                    live, LIVE_CHECK_INTERVAL_S_BOUNDS, "LEDGERGATE_AUDIT_LIVE_CHECK_INTERVAL_S"
                )
        except ValueError as error:
            raise AuditConfigError(str(error)) from None
        enabled = (raw.get("LEDGERGATE_AUDIT_LOG") or "1").strip().lower() not in (
            "0",
            "false",
            "no",
            "off",
        )
        return cls(
            enabled=enabled,
            origin=(raw.get("LEDGERGATE_AUDIT_LOG_ORIGIN") or ORIGIN_DEFAULT).strip(),
            key_file=Path(configured) if configured else Path(data_dir) / KEY_FILE_DEFAULT,
            key_file_configured=bool(configured),
            every_events=int(every),
            interval_s=interval,
            live_check_interval_s=live,
        )


def load_signer(settings: AuditSettings, *, create: bool) -> Signer | None:
    """The log's signer. `create`: make the default key file if there is none (serve, the
    on-demand checkpoint). None when there is no key and `create` is off."""
    path = settings.key_file
    if not path.exists():
        if settings.key_file_configured:
            raise AuditConfigError(f"LEDGERGATE_AUDIT_SIGNING_KEY_FILE {path} does not exist")
        if not create:
            return None
        if create_private_key_file(path):
            signer = Signer(settings.origin, load_private_key(path))
            log.warning(
                "generated a new audit signing key at %s (mode 0600); public key %s. "
                "Back it up, and set LEDGERGATE_AUDIT_SIGNING_KEY_FILE to share it between hosts",
                path,
                signer.verifier.vkey(),
            )
            return signer
    try:
        return Signer(settings.origin, load_private_key(path))
    except (NoteError, ValueError, OSError) as error:
        raise AuditConfigError(f"cannot load the audit signing key {path}: {error}") from None


def raise_alarm(app: Any, report: VerifyReport, checkpoint_size: int) -> None:
    divergence = report.divergence
    if divergence is None:
        return
    kind = divergence.kind if divergence.kind in ALARM_KINDS else "altered"
    alarm = AuditIntegrityAlarm.raise_alarm(
        kind=kind,
        position=divergence.position,
        leaf_index=divergence.leaf_index,
        checkpoint_size=checkpoint_size,
        detail=divergence.detail,
        now=datetime.now(UTC),
    )
    app.save(alarm)
    log.error(
        "AUDIT INTEGRITY ALARM: stored events disagree with signed checkpoint %d: %s at "
        "position %s: %s (alarm %s)",
        checkpoint_size,
        divergence.kind,
        divergence.position,
        divergence.detail,
        alarm.id,
    )


def live_check(
    merkle: MerkleLog, verifier: Verifier, app: Any, *, alarm: bool = True
) -> VerifyReport:
    """`verify --live`: re-hash the stored events against the latest checkpoint; on a
    divergence record an alarm event and log an error line."""
    report = verify_live(merkle, verifier)
    if report.divergence is not None and alarm:
        latest = merkle.latest_checkpoint()
        raise_alarm(app, report, latest.size if latest else 0)
    return report


class AuditService(Periodic):
    """The follower (hashing + checkpoints) and the optional scheduled live check (its
    periodic tick). Every process that serves the log's reads builds one (proofs and
    checkpoints read the stored tree); only the process that writes the views starts it:
    the single gateway, or the projection worker beside N serving processes, so hashing
    every event is not repeated in each serving process on its request path."""

    thread_name = "ledgergate-audit-live-check"
    failure_message = "scheduled audit live check failed"
    join_s_max = 10

    def __init__(
        self, settings: AuditSettings, app: Any, store: Any, *, create_key: bool = True
    ) -> None:
        super().__init__(log)
        self.app = app
        self.settings = settings
        self.signer = (
            load_signer(self.settings, create=create_key) if self.settings.enabled else None
        )
        self.merkle = MerkleLog(
            app,
            store,
            signer=self.signer,
            every_events=self.settings.every_events,
            interval_s=self.settings.interval_s,
        )
        self._last_alarm: Divergence | None = None

    @property
    def verifier(self) -> Verifier | None:
        return self.signer.verifier if self.signer else None

    def start(self) -> AuditService:
        if not self.settings.enabled:
            return self
        self.merkle.start()
        if self.settings.live_check_interval_s and self.signer is not None:
            super().start()  # the scheduled live check
        return self

    def stop(self) -> None:
        super().stop()
        self.merkle.stop()

    def interval_s(self) -> float:
        return float(self.settings.live_check_interval_s)

    def tick(self) -> None:
        self.check_once()

    def check_once(self) -> VerifyReport:
        assert self.signer is not None
        report = verify_live(self.merkle, self.signer.verifier)
        # One alarm per distinct divergence, not one per interval for the same forgery.
        if report.divergence is not None and report.divergence != self._last_alarm:
            latest = self.merkle.latest_checkpoint()
            raise_alarm(self.app, report, latest.size if latest else 0)
            self._last_alarm = report.divergence
        return report


def audit_service(services: Any) -> AuditService:
    """The process's audit service, kept in `services.audit` from its first use (not built
    in build_services: building it makes the signing key file)."""
    if services.audit is None:
        services.audit = AuditService(services.settings.audit, services.app, services.store)
    return services.audit  # type: ignore[no-any-return]
