"""An integrity alarm: the live check found the stored events disagreeing with the signed
tree. Recorded as an immutable fact (an event in the same log), so the alarm itself is
covered by the next checkpoint and cannot be quietly dropped."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from domain.errors import InvalidCommand

KINDS = ("altered", "missing", "reordered", "inserted", "bad_signature", "inconsistent")
DETAIL_CHARS_MAX = 500


class AuditIntegrityAlarm(Aggregate):
    class AlarmRaised(Aggregate.Created):
        kind: str  # one of KINDS
        position: int | None  # the first diverging event's position (None: not an event)
        leaf_index: int | None
        checkpoint_size: int  # the signed checkpoint the stored events were checked against
        detail: str  # what differs, for people; never event contents
        detected_at: datetime

    @classmethod
    def raise_alarm(
        cls,
        *,
        kind: str,
        position: int | None,
        leaf_index: int | None,
        checkpoint_size: int,
        detail: str,
        now: datetime,
        alarm_id: UUID | None = None,
    ) -> AuditIntegrityAlarm:
        if kind not in KINDS:
            raise InvalidCommand(f"unknown integrity alarm kind {kind[:32]!r}")
        return cls._create(
            cls.AlarmRaised,
            id=alarm_id or uuid4(),
            kind=kind,
            position=position,
            leaf_index=leaf_index,
            checkpoint_size=checkpoint_size,
            detail=detail[:DETAIL_CHARS_MAX],
            detected_at=now,
        )

    def __init__(self, kind: str, **facts: object) -> None:
        self.kind = kind
        self.position = facts.get("position")
