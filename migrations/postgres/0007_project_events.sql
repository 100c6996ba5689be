-- The project-events index (issue 12, projections/project_events.py): a project's own
-- events in log order with a screened copy of their fields, and which aggregate is whose.
CREATE TABLE IF NOT EXISTS lg_project_events (
    position BIGINT PRIMARY KEY,
    project_id TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    topic TEXT NOT NULL,
    recorded_at TEXT,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS lg_project_events_project ON lg_project_events (project_id, position);
CREATE INDEX IF NOT EXISTS lg_project_events_aggregate ON lg_project_events (project_id, aggregate_id, position);
CREATE TABLE IF NOT EXISTS lg_project_aggregates (
    aggregate_id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL
);
