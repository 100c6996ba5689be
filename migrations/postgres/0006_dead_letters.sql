-- Events a view could not apply (projections/runner.py): the view records the failure here
-- and moves past the event, so one bad event never stops the read side. No event data and
-- no error message (either may carry a client's value): position, view, topic, error class.
CREATE TABLE IF NOT EXISTS lg_dead_letters (
    view TEXT NOT NULL,
    position BIGINT NOT NULL,
    topic TEXT NOT NULL,
    originator_id TEXT,
    error_class TEXT NOT NULL,
    error_code TEXT,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (view, position)
);
