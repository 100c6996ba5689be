"""Writes one stored-JSON fixture per cache-policy event class into tests/fixtures/events/.
Run only when a cache-policy event class gains a new version (a released fixture is
never rewritten):

    .venv/bin/python -m tests.unit.cache.make_event_fixtures
"""

from __future__ import annotations

from domain.cache_policy import SetCachePolicy
from domain.writer import run_now
from tests.support.make_event_fixtures import OUT, fixture_ledger, write_new_fixtures

TOPIC_PREFIX = "domain.cache_policy:"


def main() -> None:
    with fixture_ledger() as (app, project_id):
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
        written = write_new_fixtures(app, OUT, (TOPIC_PREFIX,))
    print(f"wrote {len(written)} new cache-policy fixtures to {OUT}: {', '.join(written) or '-'}")


if __name__ == "__main__":
    main()
