"""Each migration is written once, in PostgreSQL's dialect; SQLite runs its translation
(projections/db.py: sqlite_script) unless migrations/sqlite/ holds an override. A fresh store
on either backend ends with the same tables and the same columns."""

from __future__ import annotations

import re
from pathlib import Path

from projections.db import ReadStore, migration_scripts, sqlite_script

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
CREATE_TABLE = re.compile(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)")
ADD_COLUMN = re.compile(r"ALTER TABLE (\w+) ADD COLUMN (?:IF NOT EXISTS )?(\w+)")


def test_the_translation_maps_each_postgres_type_to_its_sqlite_affinity() -> None:
    script = (
        "CREATE TABLE t (a BIGINT PRIMARY KEY, b TIMESTAMPTZ, c DATE, d BYTEA, e BOOLEAN,"
        " f NUMERIC(38, 9), g DOUBLE PRECISION, h TEXT, updated_at TIMESTAMPTZ)"
    )
    assert sqlite_script(script) == (
        "CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT, c TEXT, d BLOB, e INTEGER,"
        " f TEXT, g REAL, h TEXT, updated_at TEXT)"
    )


def test_every_version_runs_on_both_dialects_in_the_same_order() -> None:
    postgres = [version for version, _ in migration_scripts("postgres")]
    sqlite = [version for version, _ in migration_scripts("sqlite")]
    assert postgres == sqlite == sorted(postgres)
    assert len(postgres) >= 17
    overrides = {path.stem for path in (MIGRATIONS / "sqlite").glob("*.sql")}
    assert overrides <= set(postgres)  # an override always names a written version


def test_a_fresh_sqlite_store_has_every_table_and_column_the_postgres_migrations_declare(
    tmp_path: Path,
) -> None:
    declared: dict[str, set[str]] = {}
    for _, script in migration_scripts("postgres"):
        for table in CREATE_TABLE.findall(script):
            declared.setdefault(table, set())
        for table, column in ADD_COLUMN.findall(script):
            declared.setdefault(table, set()).add(column)
    store = ReadStore(None, str(tmp_path))
    try:
        store.migrate()
        with store.transaction(write=False) as tx:
            for table, added in declared.items():
                columns = {row["name"] for row in tx.execute(f"PRAGMA table_info({table})").fetchall()}
                assert columns, f"{table} is missing on SQLite"
                assert added <= columns, (table, added - columns)
        assert store.migrate() == []  # applied versions never run again
    finally:
        store.close()
