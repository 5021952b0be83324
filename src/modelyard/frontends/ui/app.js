// The ModelYard dashboard: polls /ui/api/overview and /ui/api/timeseries and renders them.
// Plain ES module, no build step, no third-party code; every element is built with the DOM
// API (text never goes through innerHTML).

import { attachTooltips, drawChart } from "./charts.js";
import { renderEndpoints } from "./endpoints.js";
import { badge, cell, el, fillBody, fmt, SVG_NS } from "./widgets.js";

const OVERVIEW_MS = 5000;
const SERIES_MS = 2000;
const COLORS = { rps: "#38bdf8", p99: "#f59e0b", errors: "#f87171" };

const $ = (id) => document.getElementById(id);
const state = { minutes: 5, overview: null, series: null, cards: new Map() };

// ---- fetching -----------------------------------------------------------------------------
async function getJSON(path, params = {}) {
  const url = new URL(path, import.meta.url);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, String(v));
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), 8000);
  try {
    const response = await fetch(url, { signal: ctrl.signal, cache: "no-store" });
    if (!response.ok) throw new Error(`${url.pathname}: HTTP ${response.status}`);
    return await response.json();
  } finally {
    clearTimeout(timer);
  }
}

/** Run task now and every periodMs after it finished; returns a function that runs it now. */
function poll(task, periodMs) {
  let timer = null;
  let running = false;
  let again = false;
  const tick = async () => {
    clearTimeout(timer);
    if (running) {
      again = true; // one chain of timers only: rerun when the current run ends
      return;
    }
    running = true;
    if (!document.hidden) {
      try {
        await task();
        setLive(true);
      } catch (err) {
        setLive(false, err);
      }
    }
    running = false;
    if (again) {
      again = false;
      tick();
    } else {
      timer = setTimeout(tick, periodMs);
    }
  };
  tick();
  return tick;
}

function setLive(ok, err) {
  const live = $("live");
  live.classList.toggle("offline", !ok);
  $("live-text").textContent = ok
    ? `live · ${fmt.clock(Date.now() / 1000)}`
    : `offline (${err && err.message ? err.message : "no answer"})`;
}

// ---- KPIs and header ----------------------------------------------------------------------
function renderServer(server) {
  $("server-version").textContent = `v${server.version}`;
  const pid = server.replica.endsWith(`-${server.pid}`) ? "" : ` · pid ${server.pid}`;
  // under `--workers N` the charts add up every worker that answered this one in time
  const live = server.live_workers || { answered: 1, asked: 1 };
  const workers = live.asked > 1 ? ` · worker pid ${server.pid} · charts: ${live.answered} of ${live.asked} workers` : pid;
  $("server-replica").textContent = `${server.replica}${workers}`;
  const ready = $("server-ready");
  ready.textContent = server.ready ? "ready" : "not ready";
  ready.className = `pill ${server.ready ? "good" : "bad"}`;
  ready.title = `up ${fmt.seconds(server.now - server.started_at)}, ${server.in_flight} in flight`;
}

function renderKpis() {
  const series = state.series;
  const ov = state.overview;
  if (series) {
    const recent = series.total.recent;
    $("kpi-rps").textContent = fmt.rps(recent.rps);
    $("kpi-p99").textContent = fmt.latency(recent.p99_s);
    $("kpi-errors").textContent = fmt.percent(recent.error_rate);
    $("kpi-errors").classList.toggle("bad-text", (recent.error_rate || 0) > 0.01);
    const span = fmt.seconds(series.window_s);
    $("kpi-rps-sub").textContent = `${fmt.count(series.total.requests)} requests in ${span}`;
    $("kpi-errors-sub").textContent = `${fmt.count(series.total.errors)} errors in ${span}`;
  }
  if (ov) {
    const versions = ov.models.reduce((n, m) => n + m.versions_total, 0);
    $("kpi-models").textContent = fmt.count(ov.models.length);
    $("kpi-models-sub").textContent = `${fmt.count(versions)} versions registered`;
    $("kpi-endpoints").textContent = fmt.count(ov.endpoints.length);
    const rolling = ov.endpoints.filter((e) => e.rollout && ["running", "paused"].includes(e.rollout.status));
    $("kpi-endpoints-sub").textContent = `${rolling.length} rollout${rolling.length === 1 ? "" : "s"} in progress`;
    const cache = ov.cache;
    const ready = cache.entries.filter((e) => e.state === "READY").length;
    $("kpi-cache").textContent = `${ready} loaded`;
    const used = cache.budget_bytes ? Math.min(1, cache.bytes_in_use / cache.budget_bytes) : 0;
    $("kpi-cache-meter").style.width = `${(used * 100).toFixed(1)}%`;
    $("kpi-cache-sub").textContent = `${fmt.bytes(cache.bytes_in_use)} of ${fmt.bytes(cache.budget_bytes)}`;
  }
}

// ---- charts -------------------------------------------------------------------------------
const METRICS = [
  { key: "rps", label: "requests / s", color: COLORS.rps, format: fmt.rps, minMax: 1 },
  { key: "p99_s", label: "p99", color: COLORS.p99, format: fmt.latency, minMax: 0.001 },
  { key: "error_rate", label: "errors", color: COLORS.errors, format: fmt.percent, minMax: 0.01, xLabels: true },
];

function chartCard(model) {
  const card = el("article", { cls: "chart-card", attrs: { "data-model": model } });
  const head = el("header", { parent: card });
  el("h3", { text: model, parent: head });
  const figures = el("div", { cls: "figures", parent: head });
  const values = {};
  for (const m of METRICS) {
    const fig = el("span", { cls: `figure fig-${m.key}`, parent: figures });
    values[m.key] = el("b", { parent: fig });
    el("small", { text: m.label, parent: fig });
  }
  const charts = {};
  for (const m of METRICS) {
    const wrap = el("div", { cls: "chart-wrap", parent: card });
    charts[m.key] = el("svg", { cls: "chart", ns: SVG_NS, attrs: { "data-metric": m.key, role: "img", "aria-label": `${model} ${m.label}` }, parent: wrap });
  }
  return { card, values, charts };
}

function renderCharts() {
  const series = state.series;
  if (!series) return;
  const grid = $("chart-grid");
  const seen = new Set();
  series.models.forEach((doc) => {
    seen.add(doc.model);
    let entry = state.cards.get(doc.model);
    if (!entry) {
      entry = chartCard(doc.model);
      state.cards.set(doc.model, entry);
    }
    grid.appendChild(entry.card); // (re)appending keeps the busiest first
    entry.values.rps.textContent = fmt.rps(doc.recent.rps);
    entry.values.p99_s.textContent = fmt.latency(doc.recent.p99_s);
    entry.values.error_rate.textContent = fmt.percent(doc.recent.error_rate);
    entry.values.error_rate.classList.toggle("bad-text", (doc.recent.error_rate || 0) > 0.01);
    for (const m of METRICS) {
      drawChart(entry.charts[m.key], { t0: series.t0, step: series.step_s, values: doc[m.key] }, m);
    }
  });
  for (const [model, entry] of state.cards) {
    if (!seen.has(model)) {
      entry.card.remove();
      state.cards.delete(model);
    }
  }
  $("charts-empty").hidden = series.models.length > 0;
  const shown = series.models.length;
  $("charts-note").textContent = series.models_with_traffic > shown
    ? `busiest ${shown} of ${series.models_with_traffic} models with traffic`
    : `${shown} model${shown === 1 ? "" : "s"} with traffic · ${series.step_s} s steps`;
}

// ---- models, drift, cache, events ---------------------------------------------------------
function renderModels() {
  const ov = state.overview;
  const loaded = new Map(ov.cache.entries.map((e) => [`${e.model}:${e.version}`, e.state]));
  const rows = ov.models.map((m) => {
    const tr = el("tr", { attrs: { "data-model": m.name } });
    cell(tr, m.name, "strong");
    const aliases = cell(tr);
    const entries = Object.entries(m.aliases);
    if (!entries.length) el("span", { cls: "muted", text: "–", parent: aliases });
    for (const [alias, v] of entries) el("span", { cls: "chip alias", text: `${alias} → v${v}`, parent: aliases });
    const versions = cell(tr);
    for (const v of m.versions) {
      const chip = el("span", { cls: "version", attrs: { "data-version": v.version }, parent: versions });
      el("b", { text: `v${v.version}`, parent: chip });
      el("span", { cls: "muted", text: ` ${v.runtime}`, parent: chip });
      const st = loaded.get(`${m.name}:${v.version}`);
      if (st) badge(st, st === "READY" ? "loaded" : st.toLowerCase(), chip);
      if (v.drift.status !== "none") badge(v.drift.status, `drift ${v.drift.status.replaceAll("_", " ")}`, chip);
      chip.title = `created ${fmt.ago(v.created_at, ov.server.now)}${v.aliases.length ? `, alias ${v.aliases.join(", ")}` : ""}`;
    }
    if (m.versions_total > m.versions.length) {
      el("span", { cls: "muted small", text: ` +${m.versions_total - m.versions.length} older`, parent: versions });
    }
    return tr;
  });
  fillBody($("models-table"), rows, "No models. Push one with: modelyard push model.onnx --name NAME", 3);
  $("models-note").textContent = `${ov.models.length} model${ov.models.length === 1 ? "" : "s"}`;
}

function renderDrift() {
  const ov = state.overview;
  const rows = [];
  for (const m of ov.models) {
    for (const v of m.versions) {
      if (v.drift.status === "none") continue;
      const d = v.drift;
      const tr = el("tr", { attrs: { "data-drift": `${m.name}:${v.version}` } });
      cell(tr, `${m.name} v${v.version}`, "strong");
      cell(tr, badge(d.status, d.status === "pending" ? "no report yet" : null));
      cell(tr, fmt.count(d.rows), "num");
      cell(tr, d.alarms && d.alarms.length ? d.alarms.join(", ") : "–", d.alarms && d.alarms.length ? "bad-text" : "muted");
      cell(tr, d.computed_at ? fmt.ago(d.computed_at, ov.server.now) : "–", "muted");
      rows.push(tr);
    }
  }
  fillBody($("drift-table"), rows, "No version carries drift reference statistics (modelyard drift reference).", 5);
}

function renderCache() {
  const cache = state.overview.cache;
  const s = cache.stats;
  const stats = $("cache-stats");
  stats.replaceChildren();
  const stat = (label, value) => {
    const box = el("div", { cls: "stat", parent: stats });
    el("b", { text: value, parent: box });
    el("small", { text: label, parent: box });
  };
  stat("in use", `${fmt.bytes(cache.bytes_in_use)} / ${fmt.bytes(cache.budget_bytes)}`);
  stat("hit ratio", s.hit_ratio === null ? "–" : fmt.percent(s.hit_ratio));
  stat("loads", fmt.count(s.loads));
  stat("load failures", fmt.count(s.load_failures));
  stat("evictions", fmt.count(s.evictions));
  stat("idle unloads", fmt.count(s.idle_unloads));
  const rows = cache.entries.map((e) => {
    const tr = el("tr", { attrs: { "data-entry": `${e.model}:${e.version}` } });
    cell(tr, e.model, "strong");
    cell(tr, `v${e.version}`, "num");
    const st = cell(tr, badge(e.state, e.state.toLowerCase()));
    if (e.pinned) el("span", { cls: "chip", text: "pinned", parent: st });
    if (e.error) st.title = e.error;
    cell(tr, fmt.bytes(e.bytes), "num");
    cell(tr, fmt.count(e.in_flight), "num");
    cell(tr, fmt.seconds(e.idle_s), "num");
    cell(tr, e.load_s === undefined ? "–" : fmt.latency(e.load_s + (e.fetch_s || 0)), "num");
    cell(tr, e.first_request_s === undefined ? "–" : fmt.latency(e.first_request_s), "num");
    return tr;
  });
  fillBody($("cache-table"), rows, "Nothing loaded yet: models load on their first request.", 8);
  $("cache-note").textContent = `this worker · ${cache.entries.length} entr${cache.entries.length === 1 ? "y" : "ies"}`;
}

function renderEvents() {
  const ov = state.overview;
  const list = $("events");
  list.replaceChildren();
  for (const e of ov.events) {
    const li = el("li", { parent: list });
    el("span", { cls: "muted time", text: fmt.clock(e.ts), parent: li });
    const kind = e.kind.startsWith("drift") ? "warn" : e.kind.includes("rolled_back") ? "bad" : "info";
    el("span", { cls: `badge ${kind}`, text: e.kind, parent: li });
    el("span", { cls: "strong", text: ` ${e.subject}`, parent: li });
    el("span", { text: ` ${e.message}`, parent: li });
  }
  if (!ov.events.length) el("li", { cls: "muted", text: "No events yet.", parent: list });
}

// ---- main ---------------------------------------------------------------------------------
async function refreshOverview() {
  state.overview = await getJSON("api/overview");
  renderServer(state.overview.server);
  renderEndpoints($("endpoints-table"), state.overview);
  renderModels();
  renderDrift();
  renderCache();
  renderEvents();
  renderKpis();
  document.body.dataset.overviewAt = String(state.overview.server.now);
}

async function refreshSeries() {
  state.series = await getJSON("api/timeseries", { minutes: state.minutes });
  renderCharts();
  renderKpis();
  document.body.dataset.seriesAt = String(state.series.now);
}

function start() {
  attachTooltips($("chart-grid"), $("tooltip"));
  poll(refreshOverview, OVERVIEW_MS);
  const refreshNow = poll(refreshSeries, SERIES_MS);
  $("range").addEventListener("change", (event) => {
    state.minutes = Number(event.target.value);
    refreshNow();
  });
  let resize = null;
  window.addEventListener("resize", () => {
    clearTimeout(resize);
    resize = setTimeout(renderCharts, 150);
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) refreshNow();
  });
}

start();
