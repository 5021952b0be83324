// Small SVG line charts for the dashboard, drawn by hand: no dependencies, so the page works
// offline and without a build step.

import { el, fmt, SVG_NS } from "./widgets.js";

const PAD = { left: 46, right: 10, top: 8, bottom: 18 };

const svg = (tag, attrs, parent) => el(tag, { attrs, parent, ns: SVG_NS });

function niceMax(v) {
  if (!(v > 0)) return 1;
  const base = 10 ** Math.floor(Math.log10(v));
  const f = v / base;
  const nice = f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10;
  return nice * base;
}

/**
 * Draw one series into an <svg>: a line with a soft area, gaps where a value is null, three
 * grid lines, start/end times, and a dot on the newest point. Sets data-points to the number
 * of points drawn (data-active: those above zero) and keeps what the hover read-out needs.
 * series: {t0, step, values}; opts: {format, color, minMax, height, xLabels}.
 */
export function drawChart(node, series, opts) {
  const width = Math.max(180, Math.round(node.parentNode.clientWidth || 300));
  const height = opts.height || 84;
  const pad = { ...PAD, bottom: opts.xLabels ? PAD.bottom : 6 };
  node.setAttribute("viewBox", `0 0 ${width} ${height}`);
  node.setAttribute("width", width);
  node.setAttribute("height", height);
  node.replaceChildren();
  const values = series.values;
  const n = values.length;
  const drawn = values.filter((v) => v !== null && Number.isFinite(v));
  const top = niceMax(Math.max(opts.minMax || 0, ...drawn));
  const x = (i) => pad.left + (n <= 1 ? 0 : (i * (width - pad.left - pad.right)) / (n - 1));
  const y = (v) => pad.top + (1 - Math.min(v, top) / top) * (height - pad.top - pad.bottom);

  for (const frac of [0, 0.5, 1]) {
    const yy = y(top * frac);
    svg("line", { x1: pad.left, x2: width - pad.right, y1: yy, y2: yy, class: "grid" }, node);
    const label = svg("text", { x: pad.left - 6, y: yy + 3.5, class: "axis", "text-anchor": "end" }, node);
    label.textContent = opts.format(top * frac);
  }
  if (opts.xLabels) {
    const baseY = height - 4;
    const first = svg("text", { x: pad.left, y: baseY, class: "axis" }, node);
    first.textContent = fmt.clock(series.t0);
    const last = svg("text", { x: width - pad.right, y: baseY, class: "axis", "text-anchor": "end" }, node);
    last.textContent = fmt.clock(series.t0 + series.step * n);
  }

  let line = "";
  let area = "";
  let run = [];
  const flush = () => {
    if (run.length === 0) return;
    const pts = run.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`);
    line += `M${pts.join("L")}`;
    const floor = y(0).toFixed(1);
    area += `M${run[0][0].toFixed(1)},${floor}L${pts.join("L")}L${run[run.length - 1][0].toFixed(1)},${floor}Z`;
    run = [];
  };
  values.forEach((v, i) => {
    if (v === null || !Number.isFinite(v)) flush();
    else run.push([x(i), y(v)]);
  });
  flush();
  if (area) svg("path", { d: area, class: "area", fill: opts.color }, node);
  if (line) svg("path", { d: line, class: "line", stroke: opts.color }, node);
  const newest = values.map((v, i) => [v, i]).filter(([v]) => v !== null).pop();
  if (newest) svg("circle", { cx: x(newest[1]), cy: y(newest[0]), r: 2.8, fill: opts.color }, node);
  const cursor = svg("line", { x1: 0, x2: 0, y1: pad.top, y2: height - pad.bottom, class: "cursor" }, node);
  cursor.setAttribute("visibility", "hidden");
  node.dataset.points = String(drawn.length);
  node.dataset.active = String(drawn.filter((v) => v > 0).length);
  node.chart = { series, opts, x, n, width, cursor };
}

/** Hover read-out for every chart inside root: a cursor line and a tooltip with the value. */
export function attachTooltips(root, tooltip) {
  root.addEventListener("mousemove", (event) => {
    const node = event.target.closest ? event.target.closest("svg.chart") : null;
    if (!node || !node.chart) return hide(root, tooltip);
    const { series, opts, x, n, width, cursor } = node.chart;
    const box = node.getBoundingClientRect();
    const px = ((event.clientX - box.left) * width) / box.width;
    const span = width - PAD.left - PAD.right;
    const i = Math.round(((px - PAD.left) / span) * (n - 1));
    if (n === 0 || i < 0 || i >= n) return hide(root, tooltip);
    cursor.setAttribute("x1", x(i));
    cursor.setAttribute("x2", x(i));
    cursor.setAttribute("visibility", "visible");
    tooltip.textContent = `${fmt.clock(series.t0 + series.step * i)}  ${opts.label}: ${opts.format(series.values[i])}`;
    tooltip.hidden = false;
    tooltip.style.left = `${event.clientX + 12}px`;
    tooltip.style.top = `${event.clientY + 12}px`;
  });
  root.addEventListener("mouseleave", () => hide(root, tooltip));
}

function hide(root, tooltip) {
  tooltip.hidden = true;
  for (const node of root.querySelectorAll("svg.chart")) {
    if (node.chart) node.chart.cursor.setAttribute("visibility", "hidden");
  }
}
