-- The audit record shows the path and the price actually charged (issue 10): the route
-- decision (Request.RouteDecided), every dispatch attempt and how it ended, the price and
-- FX rate a failover repriced to (Request.Repriced: the price columns then hold the charged
-- price, admission_pricing keeps the admission's), the OCR of documents
-- (Request.DocumentsProcessed), each with the id of the event that set it. Structured parts
-- are JSON text, rendered once by the view, so they read the same on every backend.
ALTER TABLE lg_audit ADD COLUMN admission_event_id TEXT;
ALTER TABLE lg_audit ADD COLUMN pricing_event_id TEXT;
ALTER TABLE lg_audit ADD COLUMN repriced_at TIMESTAMPTZ;
ALTER TABLE lg_audit ADD COLUMN admission_pricing TEXT;
ALTER TABLE lg_audit ADD COLUMN route_decision TEXT;
ALTER TABLE lg_audit ADD COLUMN attempt_log TEXT;
ALTER TABLE lg_audit ADD COLUMN ocr TEXT;
