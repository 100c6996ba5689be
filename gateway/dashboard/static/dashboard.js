// The audit dashboard. It talks only to the gateway's public read API, with the token the
// user pasted (kept in this tab's sessionStorage, sent as a Bearer header). Every value
// from the API is inserted as text (textContent / text nodes), never as HTML.

import { stackedBars } from "./charts.js";
import { verifyRequestProof } from "./proof.js";

const TOKEN_STORAGE = "ledgergate.dashboard.token";
const PROJECT_STORAGE = "ledgergate.dashboard.project";
const KEY_PREFIXES = ["lg_live_", "lg_test_"];
const REQUEST_ID_CHARS_MAX = 100;
const SPEND_DAYS_DEFAULT = 30;

const state = {
  token: null,
  admin: false,
  projectId: null, // the admin's picked project; a key reads its own project only
  cursors: [], // cursors of the pages before the current one (for "first page")
  cursor: null,
  nextCursor: null,
};

const $ = (id) => document.getElementById(id);

// --- safe DOM helpers ------------------------------------------------------------------

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "className") node.className = value;
    else if (name.startsWith("data-")) node.setAttribute(name, String(value));
    else node[name] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function display(value) {
  if (value === null || value === undefined || value === "") return "—";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (Array.isArray(value)) return value.length ? value.map(display).join(", ") : "—";
  if (typeof value === "object") {
    const entries = Object.entries(value);
    return entries.length ? entries.map(([k, v]) => `${k}: ${display(v)}`).join(", ") : "—";
  }
  return String(value);
}

function facts(list, rows) {
  list.replaceChildren();
  for (const [label, value, name] of rows) {
    list.append(el("dt", {}, label), el("dd", { "data-field": name || label }, display(value)));
  }
}

function fillTable(table, rows, emptyText, columns) {
  const body = table.tBodies[0];
  body.replaceChildren();
  if (!rows.length) {
    body.append(el("tr", { className: "empty" }, el("td", { colSpan: columns }, emptyText)));
    return;
  }
  for (const cells of rows) {
    const row = el("tr");
    for (const cell of cells) {
      if (cell instanceof Node) row.append(el("td", {}, cell));
      else if (cell && typeof cell === "object" && "num" in cell) row.append(el("td", { className: "num" }, display(cell.num)));
      else if (cell && typeof cell === "object" && "wrap" in cell) row.append(el("td", { className: "wrap" }, display(cell.wrap)));
      else if (cell && typeof cell === "object" && "time" in cell) row.append(el("td", { title: display(cell.time) }, shortTime(cell.time)));
      else row.append(el("td", {}, display(cell)));
    }
    body.append(row);
  }
}

// "2026-12-01T13:16:55.042963+00:00" -> "2026-12-01 13:16:55" (the full instant is the title)
function shortTime(value) {
  if (!value) return "—";
  const moment = new Date(value);
  return Number.isNaN(moment.getTime()) ? String(value) : moment.toISOString().slice(0, 19).replace("T", " ");
}

function badge(status) {
  return el("span", { className: `badge ${String(status || "").replace(/[^a-z_]/g, "")}` }, display(status));
}

function showError(id, error) {
  const box = $(id);
  if (!error) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  box.textContent = error instanceof ApiError ? error.describe() : `Error: ${error.message || error}`;
  box.hidden = false;
}

// --- the API ------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message, requestId) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }

  describe() {
    const where = this.requestId ? ` (X-Request-Id ${this.requestId})` : "";
    const status = this.status ? `HTTP ${this.status} ` : "";
    return `${status}${this.code || "error"}: ${this.message}${where}`;
  }
}

async function api(path, params = {}, { scoped = true } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(name, value);
  }
  if (scoped && state.admin && state.projectId) url.searchParams.set("project_id", state.projectId);
  let response;
  try {
    response = await fetch(url, {
      headers: { Authorization: `Bearer ${state.token}`, Accept: "application/json" },
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
    });
  } catch (error) {
    throw new ApiError(0, "network_error", `the gateway did not answer (${error.message})`, null);
  }
  const requestId = response.headers.get("x-request-id");
  let body = null;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(response.status, "invalid_response", "the gateway's answer is not JSON", requestId);
  }
  if (!response.ok) {
    const error = (body && body.error) || {};
    throw new ApiError(response.status, error.code, error.message || response.statusText, requestId);
  }
  return body;
}

// --- sign in / out -----------------------------------------------------------------------

function isKey(token) {
  return KEY_PREFIXES.some((prefix) => token.startsWith(prefix));
}

async function signIn(token) {
  state.token = token;
  state.admin = !isKey(token);
  showError("sign-in-error", null);
  try {
    if (state.admin) {
      const projects = await api("/v1/admin/projects", {}, { scoped: false });
      fillPicker(projects.data);
      $("who").textContent = "admin: all projects";
    } else {
      const plan = await api("/v1/billing/plan");
      $("who").textContent = `project ${plan.project_id}`;
    }
  } catch (error) {
    state.token = null;
    sessionStorage.removeItem(TOKEN_STORAGE);
    showError("sign-in-error", error);
    return false;
  }
  sessionStorage.setItem(TOKEN_STORAGE, token);
  $("picker-label").hidden = !state.admin;
  $("sign-in").hidden = true;
  $("session").hidden = false;
  $("workspace").hidden = false;
  await refreshAll();
  return true;
}

function signOut() {
  sessionStorage.removeItem(TOKEN_STORAGE);
  sessionStorage.removeItem(PROJECT_STORAGE);
  window.location.reload();
}

function fillPicker(projects) {
  const picker = $("project-picker");
  picker.replaceChildren();
  for (const project of projects) {
    picker.append(el("option", { value: project.id }, `${project.name} · ${project.id.slice(0, 8)} · ${project.plan}`));
  }
  const remembered = sessionStorage.getItem(PROJECT_STORAGE);
  const wanted = projects.find((project) => project.id === remembered) || projects[0];
  state.projectId = wanted ? wanted.id : null;
  if (wanted) picker.value = wanted.id;
  if (!projects.length) throw new ApiError(0, "no_projects", "this gateway has no projects yet", null);
}

// --- panels ------------------------------------------------------------------------------

async function refreshAll() {
  $("lookup-result").hidden = true;
  showError("lookup-error", null);
  state.cursors = [];
  state.cursor = null;
  await Promise.all([loadBalance(), loadPlan(), loadAudit(), loadSpend(), loadHealth()]);
  document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
}

async function loadBalance() {
  try {
    const balance = await api("/v1/billing/balance");
    facts($("balance"), [
      ["available", `${balance.available} ${balance.currency}`, "available"],
      ["pending (reserved)", balance.pending, "pending"],
      ["charged", balance.posted, "posted"],
      ["credits", balance.credits, "credits"],
      ["as of position", balance.as_of_position, "as_of_position"],
    ]);
  } catch (error) {
    facts($("balance"), [["balance", error instanceof ApiError ? error.describe() : String(error), "error"]]);
  }
}

async function loadPlan() {
  try {
    const plan = await api("/v1/billing/plan");
    const max = plan.monthly_requests_max;
    const used = plan.requests_this_month || 0;
    facts($("plan"), [
      ["plan", plan.billing_plan && plan.billing_plan !== plan.plan ? `${plan.plan} (billed as ${plan.billing_plan})` : plan.plan, "plan"],
      ["tier", plan.tier, "tier"],
      ["requests this month", max === null || max === undefined ? `${used} (no quota)` : `${used} of ${max}`, "requests_this_month"],
      ["quota resets", plan.quota_resets_at, "quota_resets_at"],
      ["trial ends", plan.trial_ends_at, "trial_ends_at"],
      ["fee (managed / BYOK)", `${plan.fee_rate_managed} / ${plan.fee_rate_byok}`, "fees"],
    ]);
    const bar = $("quota-bar");
    bar.hidden = !(max > 0);
    if (max > 0) $("quota-fill").style.width = `${Math.min(100, (100 * used) / max).toFixed(1)}%`;
  } catch (error) {
    facts($("plan"), [["plan", error instanceof ApiError ? error.describe() : String(error), "error"]]);
  }
}

function utcInstant(localValue) {
  if (!localValue) return null;
  const moment = new Date(localValue);
  return Number.isNaN(moment.getTime()) ? null : moment.toISOString();
}

function requestLink(requestId) {
  const link = el("button", { type: "button", className: "link", "data-request-id": requestId }, requestId);
  link.addEventListener("click", () => {
    $("lookup-id").value = requestId;
    lookUp(requestId);
    $("lookup-section").scrollIntoView({ block: "start" });
  });
  return link;
}

async function loadAudit() {
  showError("audit-error", null);
  const params = {
    actor_id: $("f-actor").value.trim(),
    model: $("f-model").value.trim(),
    status: $("f-status").value,
    since: utcInstant($("f-since").value),
    until: utcInstant($("f-until").value),
    limit: $("f-limit").value,
    cursor: state.cursor,
  };
  const table = $("audit-table");
  try {
    const page = await api("/v1/data/audit", params);
    fillTable(
      table,
      page.data.map((row) => [
        { time: row.received_at },
        requestLink(row.request_id),
        badge(row.status),
        { wrap: row.actor_id },
        row.model || row.model_requested,
        row.provider,
        { num: row.input_tokens === null ? null : `${row.input_tokens} / ${row.output_tokens ?? "—"}` },
        { num: row.cost === null ? null : `${row.cost} ${row.currency || ""}` },
      ]),
      "No request matches these filters.",
      8,
    );
    state.nextCursor = page.next_cursor;
    $("audit-next").disabled = !page.has_more;
    $("audit-first").disabled = state.cursors.length === 0;
    $("audit-page").textContent = `page ${state.cursors.length + 1} · ${page.data.length} rows · as of position ${page.as_of_position}`;
    table.dataset.rows = String(page.data.length);
  } catch (error) {
    fillTable(table, [], "—", 8);
    table.dataset.rows = "0";
    showError("audit-error", error);
  }
}

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

async function loadSpend() {
  showError("spend-error", null);
  const dimension = $("spend-by").value;
  if (!$("spend-until").value) {
    const today = new Date();
    $("spend-until").value = isoDay(today);
    $("spend-since").value = isoDay(new Date(today.getTime() - (SPEND_DAYS_DEFAULT - 1) * 86400000));
  }
  const chart = $("spend-chart");
  try {
    const usage = await api("/v1/billing/usage", {
      group_by: `day,${dimension}`,
      since: $("spend-since").value,
      until: $("spend-until").value,
    });
    const days = [];
    for (let day = new Date(`${usage.since}T00:00:00Z`); isoDay(day) <= usage.until; day = new Date(day.getTime() + 86400000)) {
      days.push(isoDay(day));
    }
    const byName = new Map();
    for (const bucket of usage.data) {
      const name = bucket[dimension] === null || bucket[dimension] === undefined ? "(none)" : String(bucket[dimension]);
      let item = byName.get(name);
      if (!item) {
        item = { name, total: 0, values: new Map(), requests: 0, input: 0, output: 0, cost: 0 };
        byName.set(name, item);
      }
      const cost = Number(bucket.cost);
      item.values.set(bucket.day, (item.values.get(bucket.day) || 0) + cost);
      item.total += cost;
      item.requests += bucket.requests;
      item.input += bucket.input_tokens;
      item.output += bucket.output_tokens;
    }
    const series = [...byName.values()];
    stackedBars(chart, { days, series, unit: usage.currency || "" });
    fillTable(
      $("spend-table"),
      series
        .sort((a, b) => b.total - a.total)
        .map((item) => [item.name, { num: item.requests }, { num: `${item.input} / ${item.output}` }, { num: `${item.total.toFixed(6)} ${usage.currency || ""}` }]),
      "No spend in this range.",
      4,
    );
  } catch (error) {
    chart.replaceChildren();
    fillTable($("spend-table"), [], "—", 4);
    showError("spend-error", error);
  }
}

function percent(rate) {
  return rate === null || rate === undefined ? null : `${(100 * rate).toFixed(1)} %`;
}

function milliseconds(value) {
  return value === null || value === undefined ? null : `${Number(value).toFixed(0)} ms`;
}

async function loadHealth() {
  showError("health-error", null);
  try {
    const board = await api("/v1/models/leaderboard");
    fillTable(
      $("health-table"),
      board.data.map((row) => [
        row.model,
        row.provider,
        { num: row.requests },
        { num: percent(row.success_rate) },
        { num: percent(row.recent_success_rate) },
        { num: milliseconds(row.latency_p50_ms) },
        { num: milliseconds(row.latency_p95_ms) },
      ]),
      "No model has served a request in this gateway process yet.",
      7,
    );
    fillTable(
      $("breaker-table"),
      board.breakers.map((breaker) => [
        breaker.endpoint,
        badge(breaker.state),
        { num: `${breaker.failures_in_window} / ${breaker.requests_in_window}` },
        { num: breaker.consecutive_failures },
      ]),
      "No endpoint has been called yet.",
      4,
    );
  } catch (error) {
    fillTable($("health-table"), [], "—", 7);
    fillTable($("breaker-table"), [], "—", 4);
    showError("health-error", error);
  }
}

// --- look up one request -----------------------------------------------------------------

let currentRecord = null;

async function lookUp(rawId) {
  const requestId = rawId.trim();
  const result = $("lookup-result");
  showError("lookup-error", null);
  result.hidden = true;
  currentRecord = null;
  if (!requestId || requestId.length > REQUEST_ID_CHARS_MAX) {
    showError("lookup-error", new Error("paste a request id (lg_req_…)"));
    return;
  }
  try {
    const record = await api(`/v1/data/audit/${encodeURIComponent(requestId)}`);
    currentRecord = record;
    renderRecord(record);
    result.hidden = false;
    result.dataset.requestId = record.request_id;
  } catch (error) {
    showError("lookup-error", error);
  }
}

function renderRecord(record) {
  const status = $("r-status");
  status.className = `badge ${String(record.status).replace(/[^a-z_]/g, "")}`;
  status.textContent = display(record.status);
  $("r-request-id").textContent = record.request_id;
  facts($("r-request"), [
    ["endpoint", record.endpoint, "endpoint"],
    ["actor", record.actor_id, "actor_id"],
    ["API key", record.key_id, "key_id"],
    ["model requested", record.model_requested, "model_requested"],
    ["model", record.model, "model"],
    ["provider", record.provider, "provider"],
    ["upstream model", record.upstream_model, "upstream_model"],
    ["provider endpoint", record.endpoint_name, "endpoint_name"],
    ["key source", record.key_source, "key_source"],
    ["stream", record.stream, "stream"],
    ["HTTP status", record.http_status, "http_status"],
    ["attempts", record.attempts, "attempts"],
    ["trace id", record.trace_id, "trace_id"],
    ["conversation id", "conversation_id" in record ? record.conversation_id : "not recorded by this gateway", "conversation_id"],
    ["received", record.received_at, "received_at"],
    ["finished", record.finished_at, "finished_at"],
    ["latency / upstream", record.latency_ms === null ? null : `${record.latency_ms} ms / ${record.upstream_ms ?? "—"} ms`, "latency_ms"],
    ["first chunk", record.first_chunk_ms === null ? null : `${record.first_chunk_ms} ms`, "first_chunk_ms"],
    ["finish reason", record.finish_reason, "finish_reason"],
  ]);
  const currency = record.currency || "";
  const money = (value) => (value === null || value === undefined ? null : `${value} ${currency}`);
  facts($("r-cost"), [
    ["input tokens", record.input_tokens, "input_tokens"],
    ["output tokens", record.output_tokens, "output_tokens"],
    ["cached tokens", record.cached_tokens, "cached_tokens"],
    ["usage source", record.usage_source, "usage_source"],
    ["reserved", money(record.reserved_amount), "reserved_amount"],
    ["charged", money(record.cost), "cost"],
    ["provider cost", money(record.provider_cost), "provider_cost"],
    ["fee", record.fee_amount === null ? null : `${money(record.fee_amount)} (rate ${display(record.fee_rate)})`, "fee_amount"],
    ["shortfall", money(record.shortfall_amount), "shortfall_amount"],
  ]);
  const pricing = record.pricing || {};
  const pricingRows = [
    ["price id", pricing.price_id, "price_id"],
    ["set by event", pricing.price_event_id, "price_event_id"],
    ["effective from", pricing.effective_from, "price_effective_from"],
    ["input / Mtok", pricing.input_per_mtok === null ? null : `${pricing.input_per_mtok} ${pricing.price_currency || ""}`, "input_per_mtok"],
    ["output / Mtok", pricing.output_per_mtok === null ? null : `${pricing.output_per_mtok} ${pricing.price_currency || ""}`, "output_per_mtok"],
    ["FX rate", pricing.fx_rate === null ? null : `${pricing.fx_rate} (${pricing.price_currency || "?"} → ${currency || "?"})`, "fx_rate"],
    ["FX rate id", pricing.fx_rate_id, "fx_rate_id"],
    ["FX set by event", pricing.fx_rate_event_id, "fx_rate_event_id"],
  ];
  for (const [index, repricing] of (record.repricings || []).entries()) {
    pricingRows.push([`repriced #${index + 1}`, `${repricing.model}: ${repricing.input_per_mtok} / ${repricing.output_per_mtok} ${repricing.price_currency} (price ${repricing.price_id}, FX ${repricing.fx_rate}) at ${repricing.repriced_at}`, `repricing_${index + 1}`]);
  }
  if (record.documents) {
    const docs = record.documents;
    pricingRows.push(["documents (OCR)", `${docs.documents} documents, ${docs.pages} pages by ${docs.ocr_model} at ${docs.per_page} ${docs.price_currency}/page: ${docs.cost}`, "documents"]);
  }
  facts($("r-pricing"), pricingRows);
  const screening = record.pii_screening || {};
  facts($("r-pii"), [
    ["policy received", record.pii_policy_received, "pii_policy_received"],
    ["policy source", screening.policy_source, "pii_policy_source"],
    ["screened", record.pii_processed, "pii_processed"],
    ["action", record.pii_action, "pii_action"],
    ["sensitivity", record.pii_sensitivity, "pii_sensitivity"],
    ["language", record.pii_language, "pii_language"],
    ["entities detected", record.pii_entities_detected, "pii_entities_detected"],
    ["by type", record.pii_entity_counts, "pii_entity_counts"],
    ["redactions", record.pii_redactions_applied, "pii_redactions_applied"],
    ["blocked", record.pii_blocked, "pii_blocked"],
    ["blocked types", screening.blocked_entity_types, "pii_blocked_entity_types"],
    ["failure", record.pii_failure_code, "pii_failure_code"],
    ["latency", record.pii_latency_ms === null ? null : `${record.pii_latency_ms} ms`, "pii_latency_ms"],
  ]);
  const failed = Boolean(record.error_code);
  $("r-error-box").hidden = !failed;
  if (failed) {
    facts($("r-error"), [
      ["code", record.error_code, "error_code"],
      ["type", record.error_type, "error_type"],
      ["message", record.error_message, "error_message"],
      ["HTTP status", record.http_status, "http_status"],
      ["chunks delivered", record.delivered_chunks, "delivered_chunks"],
    ]);
  }
  fillTable(
    $("r-transitions"),
    (record.transitions || []).map((step) => [{ num: step.version }, badge(step.event), step.at]),
    "No events recorded.",
    3,
  );
  const route = record.route;
  if (route) {
    facts($("r-route"), [
      ["requested", route.requested_model, "route_requested_model"],
      ["mode / variant", `${route.mode}${route.variant ? ` / ${route.variant}` : ""}`, "route_mode"],
      ["tier", route.tier, "route_tier"],
      ["chosen", `${route.model} via ${route.endpoint}`, "route_chosen"],
      ["reason", route.reason, "route_reason"],
      ["confidence", route.confidence, "route_confidence"],
      ["failover order", route.failover, "route_failover"],
      ["decided", route.decided_at, "route_decided_at"],
    ]);
  } else {
    facts($("r-route"), [["route", "no route was decided (rejected before routing)", "route_none"]]);
  }
  fillTable(
    $("r-candidates"),
    (route ? route.candidates : []).map((candidate) => [candidate.model, { num: candidate.score }, candidate.detail]),
    "No candidates recorded.",
    3,
  );
  fillTable(
    $("r-attempts"),
    (record.dispatches || []).map((attempt) => [
      { num: attempt.attempt },
      attempt.provider,
      attempt.model,
      attempt.upstream_model,
      attempt.endpoint_name,
      attempt.dispatched_at,
    ]),
    "Never dispatched to a provider.",
    6,
  );
  resetProof();
}

// --- the inclusion proof -----------------------------------------------------------------

function resetProof() {
  const result = $("proof-result");
  result.textContent = "";
  result.className = "";
  delete result.dataset.status;
  $("proof-checks").hidden = true;
}

async function checkProof() {
  if (!currentRecord) return;
  resetProof();
  const result = $("proof-result");
  const requestId = currentRecord.request_id;
  result.textContent = "checking…";
  let outcome;
  try {
    const proof = await api(`/v1/data/audit/${encodeURIComponent(requestId)}/proof`);
    outcome = await verifyRequestProof(proof, $("proof-key").value.trim());
  } catch (error) {
    const missing = error instanceof ApiError && error.code === "unsupported_endpoint";
    outcome = {
      status: "failed",
      checks: [],
      reason: missing ? "this gateway serves no inclusion proofs" : error instanceof ApiError ? error.describe() : String(error),
    };
  }
  if (!currentRecord || currentRecord.request_id !== requestId) return; // another lookup since
  const labels = { verified: "verified", pending: "not yet provable", failed: "NOT verified" };
  let text = labels[outcome.status] || outcome.status;
  if (outcome.status === "verified") text += `: ${outcome.covered} events under the checkpoint signed by ${outcome.key}`;
  if (outcome.reason) text += `: ${outcome.reason}`;
  result.textContent = text;
  result.className = outcome.status === "verified" ? "proof-ok" : outcome.status === "failed" ? "proof-bad" : "muted";
  result.dataset.status = outcome.status;
  if (outcome.checks.length) {
    fillTable(
      $("proof-checks"),
      outcome.checks.map((item) => [item.check, item.ok === true ? "ok" : item.ok === false ? "failed" : "pending", item.detail]),
      "",
      3,
    );
    $("proof-checks").hidden = false;
  }
}

// --- wiring ------------------------------------------------------------------------------

function init() {
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    $("token").value = "";
    if (token) signIn(token);
  });
  $("sign-out").addEventListener("click", signOut);
  $("project-picker").addEventListener("change", (event) => {
    state.projectId = event.target.value;
    sessionStorage.setItem(PROJECT_STORAGE, state.projectId);
    refreshAll();
  });
  $("lookup-form").addEventListener("submit", (event) => {
    event.preventDefault();
    lookUp($("lookup-id").value);
  });
  $("proof-button").addEventListener("click", checkProof);
  $("audit-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    state.cursors = [];
    state.cursor = null;
    loadAudit();
  });
  $("audit-reset").addEventListener("click", () => {
    $("audit-filters").reset();
    state.cursors = [];
    state.cursor = null;
    loadAudit();
  });
  $("audit-next").addEventListener("click", () => {
    if (!state.nextCursor) return;
    state.cursors.push(state.cursor);
    state.cursor = state.nextCursor;
    loadAudit();
  });
  $("audit-first").addEventListener("click", () => {
    state.cursors = [];
    state.cursor = null;
    loadAudit();
  });
  $("spend-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadSpend();
  });
  $("spend-by").addEventListener("change", loadSpend);
  const stored = sessionStorage.getItem(TOKEN_STORAGE);
  const ready = stored ? signIn(stored) : Promise.resolve(false);
  ready.finally(() => {
    document.body.dataset.ready = "1";
  });
}

init();
