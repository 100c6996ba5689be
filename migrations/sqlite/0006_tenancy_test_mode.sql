-- SQLite override of migrations/postgres/0006_tenancy_test_mode.sql: SQLite has no
-- ADD COLUMN IF NOT EXISTS.
-- Test mode (lg_test_ keys, issue 14 via issue 9): a project's test balance is a second
-- account (mode 'test'), kept apart from the live balances; the audit says each
-- request's mode.
CREATE TABLE IF NOT EXISTS lg_test_balances (
    account_id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL UNIQUE,
    currency TEXT NOT NULL,
    credits TEXT NOT NULL,
    posted TEXT NOT NULL,
    pending TEXT NOT NULL,
    available TEXT NOT NULL,
    updated_at TEXT,
    position INTEGER NOT NULL
);
ALTER TABLE lg_audit ADD COLUMN mode TEXT NOT NULL DEFAULT 'live';
