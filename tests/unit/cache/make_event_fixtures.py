"""Writes one stored-JSON fixture per cache-policy event class into tests/fixtures/events/.
Run only when a cache-policy event class gains a new version:

    .venv/bin/python -m tests.unit.cache.make_event_fixtures
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from uuid import UUID

from domain import commands as c
from domain.application import open_application
from domain.cache_policy import SetCachePolicy
from domain.writer import run_now

OUT = Path(__file__).resolve().parents[2] / "fixtures" / "events"
TOPIC_PREFIX = "domain.cache_policy:"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        app = open_application(None, tmp)
        created = run_now(app, c.CreateProject(name="fixture", currency="EUR")).value
        project_id = UUID(created["project_id"])
        run_now(
            app,
            SetCachePolicy(
                project_id=project_id,
                default_mode="always",
                share_across_keys=True,
                semantic_threshold="0.92",
                semantic_model="text-embedding-3-small",
                set_by="fixture",
            ),
        )
        seen: set[str] = set()
        for notification in app.recorder.select_notifications(start=1, limit=10_000):
            topic = notification.topic
            if topic in seen or not topic.startswith(TOPIC_PREFIX):
                continue
            seen.add(topic)
            name = topic.split(":")[1].replace(".", "_") + "_v1.json"
            fixture = {"topic": topic, "state": json.loads(notification.state)}
            (OUT / name).write_text(json.dumps(fixture, indent=2, sort_keys=True) + "\n")
        app.close()
        print(f"wrote {len(seen)} cache-policy fixtures to {OUT}")


if __name__ == "__main__":
    main()
