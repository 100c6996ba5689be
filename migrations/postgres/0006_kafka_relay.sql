-- The Kafka outbox relay's progress (issue 13): per relay (one per topic), the last event-log
-- position the broker acknowledged. Written only after the acknowledgement, so after a crash
-- the relay resumes from here: it may republish what followed, it never skips.
CREATE TABLE IF NOT EXISTS lg_relay (
    relay TEXT PRIMARY KEY,
    position BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
