-- Test mode (lg_test_ keys, issue 14 via issue 9): a project's test balance is a second
-- account (mode 'test'), kept apart from the live balances; the audit says each
-- request's mode.
CREATE TABLE IF NOT EXISTS lg_test_balances (
    account_id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL UNIQUE,
    currency TEXT NOT NULL,
    credits NUMERIC(38, 9) NOT NULL,
    posted NUMERIC(38, 9) NOT NULL,
    pending NUMERIC(38, 9) NOT NULL,
    available NUMERIC(38, 9) NOT NULL,
    updated_at TIMESTAMPTZ,
    position BIGINT NOT NULL
);
ALTER TABLE lg_audit ADD COLUMN IF NOT EXISTS mode TEXT NOT NULL DEFAULT 'live';
