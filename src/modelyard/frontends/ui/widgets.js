// DOM builders and number formatting shared by the dashboard's modules.

export const SVG_NS = "http://www.w3.org/2000/svg";

export const STATUS_CLASS = {
  ok: "good", running: "info", promoted: "good", paused: "warn", pending: "muted",
  warn: "warn", alarm: "bad", rolled_back: "bad", aborted: "bad",
  insufficient_data: "muted", none: "muted", READY: "good", LOADING: "info", FAILED: "bad",
};

/** Create an element (HTML, or SVG with ns=SVG_NS), set attributes/text, append to parent. */
export function el(tag, { cls, text, attrs, parent, ns } = {}) {
  const node = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  if (cls) node.setAttribute("class", cls);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  if (parent) parent.appendChild(node);
  return node;
}

// ---- formatting ---------------------------------------------------------------------------
const trim = (x, digits) => Number(x.toFixed(digits)).toString();

export const fmt = {
  rps(v) {
    if (v === null || v === undefined) return "–";
    if (v === 0) return "0";
    if (v < 10) return trim(v, 2);
    if (v < 100) return trim(v, 1);
    return Math.round(v).toLocaleString("en-US");
  },
  latency(s) {
    if (s === null || s === undefined) return "–";
    if (s === 0) return "0";
    if (s < 1e-3) return `${trim(s * 1e6, 0)} µs`;
    if (s < 1) return `${trim(s * 1e3, s < 0.01 ? 2 : 1)} ms`;
    return `${trim(s, 2)} s`;
  },
  percent(r) {
    if (r === null || r === undefined) return "–";
    if (r === 0) return "0 %";
    const p = r * 100;
    return `${trim(p, p < 1 ? 2 : 1)} %`;
  },
  bytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let v = n;
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i += 1;
    }
    return `${trim(v, v < 10 && i > 0 ? 1 : 0)} ${units[i]}`;
  },
  count(n) {
    return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US");
  },
  seconds(s) {
    if (s === null || s === undefined) return "–";
    if (s < 60) return `${trim(s, s < 10 ? 1 : 0)} s`;
    if (s < 3600) {
      const rest = Math.round(s % 60);
      return rest ? `${Math.floor(s / 60)} min ${rest} s` : `${Math.floor(s / 60)} min`;
    }
    return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  },
  clock(ts) {
    const d = new Date(ts * 1000);
    return d.toLocaleTimeString("en-GB", { hour12: false });
  },
  ago(ts, now) {
    const s = Math.max(0, now - ts);
    if (s < 90) return `${Math.round(s)} s ago`;
    if (s < 5400) return `${Math.round(s / 60)} min ago`;
    if (s < 172800) return `${Math.round(s / 3600)} h ago`;
    return `${Math.round(s / 86400)} d ago`;
  },
};

export const trimPct = (p) => `${Number(p.toFixed(p < 10 ? 1 : 0))} %`;

// ---- table helpers ------------------------------------------------------------------------
export function badge(status, text, parent) {
  return el("span", { cls: `badge ${STATUS_CLASS[status] || "muted"}`, text: text ?? status.replaceAll("_", " "), parent });
}

export function cell(row, content, cls) {
  const td = el("td", { cls, parent: row });
  if (content instanceof Node) td.appendChild(content);
  else if (content !== undefined) td.textContent = String(content);
  return td;
}

export function fillBody(table, rows, emptyText, columns) {
  const body = table.tBodies[0];
  body.replaceChildren(...rows);
  if (rows.length === 0) {
    const tr = el("tr", { cls: "empty" });
    el("td", { text: emptyText, attrs: { colspan: columns }, parent: tr });
    body.appendChild(tr);
  }
}
