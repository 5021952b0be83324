// The endpoints table: traffic split bars (configured / effective, and observed), rollout
// progress and the other policies of each endpoint.

import { badge, cell, el, fillBody, fmt, STATUS_CLASS, trimPct } from "./widgets.js";

const ROUTE_COLORS = ["#38bdf8", "#a78bfa", "#f472b6", "#facc15", "#2dd4bf", "#fb923c"];
const CANDIDATE = "candidate";

function splitBar(routes, key, labels) {
  const wrap = el("div", { cls: "split" });
  const bar = el("div", { cls: "split-bar", parent: wrap });
  const total = routes.reduce((n, r) => n + r[key], 0);
  routes.forEach((r, i) => {
    if (!(r[key] > 0)) return;
    const seg = el("span", { cls: `seg${r.name === CANDIDATE ? " candidate" : ""}`, parent: bar });
    seg.style.width = `${((100 * r[key]) / total).toFixed(2)}%`;
    seg.style.background = r.name === CANDIDATE ? "" : ROUTE_COLORS[i % ROUTE_COLORS.length];
    seg.title = `${r.name} → ${r.target}: ${trimPct((100 * r[key]) / total)}`;
  });
  if (labels) {
    const legend = el("div", { cls: "split-legend", parent: wrap });
    routes.forEach((r, i) => {
      const item = el("span", { cls: "legend-item", parent: legend });
      const sw = el("i", { cls: `swatch${r.name === CANDIDATE ? " candidate" : ""}`, parent: item });
      if (r.name !== CANDIDATE) sw.style.background = ROUTE_COLORS[i % ROUTE_COLORS.length];
      el("b", { text: trimPct(total ? (100 * r[key]) / total : 0), parent: item });
      el("span", { text: ` ${r.name}`, parent: item });
      el("span", { cls: "muted", text: ` ${r.target}`, parent: item });
    });
  }
  return wrap;
}

function observedSplit(ep) {
  const counts = ep.observed || {};
  const n = Object.values(counts).reduce((a, b) => a + b, 0);
  const wrap = el("div", { cls: "observed" });
  if (n === 0) {
    el("span", { cls: "muted", text: "observed: no requests in the last minute", parent: wrap });
    return wrap;
  }
  const routes = ep.routes.map((r) => ({ ...r, seen: counts[r.name] || 0 }));
  for (const [name, seen] of Object.entries(counts)) {
    if (!routes.some((r) => r.name === name)) routes.push({ name, target: "", seen });
  }
  el("span", { cls: "muted", text: `observed (${fmt.count(n)} req):`, parent: wrap });
  wrap.appendChild(splitBar(routes, "seen", false));
  el("span", { cls: "muted", text: routes.filter((r) => r.seen).map((r) => `${r.name} ${trimPct((100 * r.seen) / n)}`).join(" · "), parent: wrap });
  return wrap;
}

function rolloutCell(ep, now) {
  const ro = ep.rollout;
  const box = el("div", { cls: "rollout" });
  if (!ro) {
    el("span", { cls: "muted", text: "no rollout", parent: box });
    return box;
  }
  const head = el("div", { cls: "rollout-head", parent: box });
  badge(ro.status, null, head);
  el("span", { text: ` ${ro.candidate}`, parent: head });
  el("span", { cls: "muted", text: ` → ${ro.promote_alias}`, parent: head });
  const track = el("div", { cls: "progress", attrs: { "data-weight": ro.weight }, parent: box });
  const fill = el("div", { cls: `progress-fill ${STATUS_CLASS[ro.status] || "muted"}`, parent: track });
  fill.style.width = `${Math.min(100, ro.weight)}%`;
  ro.steps.forEach((w, i) => {
    const tick = el("span", { cls: `tick${i <= ro.step && ro.status !== "pending" ? " done" : ""}`, parent: track });
    tick.style.left = `${w}%`;
    tick.title = `step ${i + 1}: ${w} %`;
  });
  const parts = [`step ${ro.step + 1} of ${ro.steps.length}`, `${trimPct(ro.weight)} on candidate`];
  if (ro.status === "running" && ro.hold_s) {
    parts.push(`${fmt.seconds(Math.max(0, ro.hold_s - (now - ro.step_started_at)))} left in step`);
  }
  el("div", { cls: "muted small", text: parts.join(" · "), parent: box });
  if (ro.reason) el("div", { cls: "reason small", text: ro.reason, parent: box });
  return box;
}

function policies(f) {
  const box = el("div", { cls: "chips" });
  const chip = (text, title) => el("span", { cls: "chip", text, attrs: title ? { title } : {}, parent: box });
  if (f.sticky_key) chip(`sticky: ${f.sticky_key}`);
  if (f.timeout_ms) chip(`timeout ${f.timeout_ms} ms`);
  for (const s of f.shadows) chip(`shadow ${s}`);
  if (f.fallback.length) chip(`fallback → ${f.fallback.join(" → ")}`);
  if (f.hedging) chip("hedging");
  if (f.cache) chip("response cache");
  if (f.cascade) chip(`cascade ${f.cascade}`);
  if (!box.childElementCount) el("span", { cls: "muted", text: "–", parent: box });
  return box;
}

/** Fill table (the endpoints table) from an overview document. */
export function renderEndpoints(table, ov) {
  const rows = ov.endpoints.map((ep) => {
    const tr = el("tr", { attrs: { "data-endpoint": ep.name } });
    const name = cell(tr);
    el("div", { cls: "strong", text: ep.name, parent: name });
    el("div", { cls: "muted small", text: `revision ${ep.revision} · ${fmt.ago(ep.updated_at, ov.server.now)}`, parent: name });
    const split = cell(tr);
    split.appendChild(splitBar(ep.routes, "effective", true));
    split.appendChild(observedSplit(ep));
    cell(tr, rolloutCell(ep, ov.server.now));
    cell(tr, policies(ep.features));
    return tr;
  });
  fillBody(table, rows, "No endpoints. Create one with: modelyard endpoint apply -f spec.yaml", 4);
}
