-- Price identity includes the project for custom models (issue 9, item 7): a project's
-- custom-model prices carry its id; shipped models' prices have none.
ALTER TABLE lg_pricing_books ADD COLUMN project_id TEXT;
ALTER TABLE lg_pricing_history ADD COLUMN project_id TEXT;
-- Custom-model prices recorded before per-project books said whose they were in `source`.
UPDATE lg_pricing_history SET project_id = substr(source, 8) WHERE source LIKE 'custom:%';
CREATE INDEX IF NOT EXISTS lg_pricing_history_scope ON lg_pricing_history (kind, project_id, model, effective_from);
