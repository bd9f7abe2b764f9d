// Charts on uPlot (vendor/uPlot.iife.min.js, MIT): time series, grouped and
// stacked bars. Each returns {update(...), destroy()} and follows its
// container's width.

export const PALETTE = ["#4f46e5", "#10b981", "#f59e0b", "#ef4444", "#8b5cf6", "#0ea5e9", "#ec4899", "#64748b"];
export const STATUS_COLORS = {
  queued: "#9ca3af", sent: "#3b82f6", delivered: "#10b981", opened: "#8b5cf6", clicked: "#6d28d9",
  failed: "#ef4444", bounced: "#f97316", suppressed: "#f59e0b",
};
export const CHANNEL_COLORS = { email: "#4f46e5", push: "#0ea5e9", in_app: "#10b981" };

const AXIS = { stroke: "#6b7280", grid: { stroke: "#f0f1f4", width: 1 }, ticks: { stroke: "#e5e7eb", width: 1, size: 4 }, font: "11px system-ui, sans-serif" };

function uPlotLib() {
  if (!window.uPlot) throw new Error("the chart library (vendor/uPlot.iife.min.js) did not load");
  return window.uPlot;
}

function widthOf(el) {
  return Math.max(260, Math.floor(el.clientWidth || el.parentElement?.clientWidth || 600));
}

function follow(el, u) {
  const ro = new ResizeObserver(() => {
    const w = Math.floor(el.clientWidth);
    if (w > 0 && Math.abs(w - u.width) > 2) u.setSize({ width: w, height: u.height });
  });
  ro.observe(el);
  return () => ro.disconnect();
}

function yRange(_u, _min, max) {
  return [0, max > 0 ? max * 1.12 : 1];
}

function fmtCompact(v) {
  if (v === null || v === undefined) return "";
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(1).replace(/\.0$/, "") + "M";
  if (a >= 1e3) return (v / 1e3).toFixed(1).replace(/\.0$/, "") + "k";
  return String(Math.round(v * 100) / 100);
}

// x: unix seconds; series: [{label, color, bars, dash, width}]; data: [xs, ys...]
export function timeChart(el, { series, data, height = 220, yFormat = fmtCompact, xRange = null }) {
  const U = uPlotLib();
  const opts = {
    width: widthOf(el),
    height,
    cursor: { points: { size: 6 } },
    legend: { show: series.length > 1, live: false },
    scales: { x: { time: true, range: xRange ? () => xRange() : undefined }, y: { range: yRange } },
    axes: [{ ...AXIS }, { ...AXIS, size: 48, values: (_u, splits) => splits.map(yFormat) }],
    series: [
      {},
      ...series.map((s, i) => {
        const color = s.color || PALETTE[i % PALETTE.length];
        return {
          label: s.label,
          stroke: color,
          width: s.width || (s.bars ? 0 : 2),
          fill: s.bars ? color + "cc" : s.fill || undefined,
          dash: s.dash,
          paths: s.bars ? U.paths.bars({ size: [s.barSize || 0.75, 40], align: s.align || 0 }) : undefined,
          points: { show: !s.bars && !s.dash },
          value: (_u, v) => (v === null || v === undefined ? "–" : yFormat(v)),
          spanGaps: s.spanGaps || false,
        };
      }),
    ],
  };
  const u = new U(opts, data, el);
  const unfollow = follow(el, u);
  return {
    u,
    update(next) {
      u.setData(next);
    },
    destroy() {
      unfollow();
      u.destroy();
    },
  };
}

// Bars side by side for each group: values[seriesIndex][groupIndex].
export function groupedBars(el, { groups, series, values, height = 220, yFormat = fmtCompact, yMax = null }) {
  const U = uPlotLib();
  const S = series.length;
  const slot = S + 1; // one empty slot between groups
  const n = groups.length * slot;
  const xs = Array.from({ length: n }, (_, i) => i);
  const data = [xs, ...series.map((_s, si) => xs.map((x) => (x % slot === si ? values[si][Math.floor(x / slot)] ?? null : null)))];
  const centers = groups.map((_g, gi) => gi * slot + (S - 1) / 2);
  const u = new U({
    width: widthOf(el),
    height,
    legend: { show: S > 1, live: false },
    cursor: { show: false },
    scales: { x: { time: false, range: () => [-0.8, n - 1.2] }, y: { range: yMax ? () => [0, yMax] : yRange } },
    axes: [
      { ...AXIS, grid: { show: false }, splits: () => centers, values: (_u, splits) => splits.map((v) => groups[centers.indexOf(v)] ?? "") },
      { ...AXIS, size: 52, values: (_u, splits) => splits.map(yFormat) },
    ],
    series: [
      {},
      ...series.map((s, i) => {
        const color = s.color || PALETTE[i % PALETTE.length];
        return { label: s.label, stroke: color, fill: color + "dd", width: 0, points: { show: false }, paths: U.paths.bars({ size: [0.92, 64], align: 0 }) };
      }),
    ],
    hooks: { draw: [(u) => labelBars(u, data, yFormat)] },
  }, data, el);
  const unfollow = follow(el, u);
  return { u, destroy() { unfollow(); u.destroy(); } };
}

// One stacked bar per group: values[seriesIndex][groupIndex] (drawn largest first).
export function stackedBars(el, { groups, series, values, height = 220, yFormat = fmtCompact }) {
  const U = uPlotLib();
  const xs = groups.map((_g, i) => i);
  const cumulative = [];
  let running = xs.map(() => 0);
  for (const row of values) {
    running = running.map((r, i) => r + (row[i] || 0));
    cumulative.push(running.slice());
  }
  const order = series.map((_s, i) => i).reverse();
  const data = [xs, ...order.map((i) => cumulative[i])];
  const totals = running;
  const u = new U({
    width: widthOf(el),
    height,
    legend: { show: true, live: false },
    cursor: { show: false },
    scales: { x: { time: false, range: () => [-0.6, groups.length - 0.4] }, y: { range: yRange } },
    axes: [
      { ...AXIS, grid: { show: false }, splits: () => xs, values: (_u, splits) => splits.map((v) => groups[v] ?? "") },
      { ...AXIS, size: 52, values: (_u, splits) => splits.map(yFormat) },
    ],
    series: [
      {},
      ...order.map((i) => {
        const s = series[i];
        const color = s.color || PALETTE[i % PALETTE.length];
        return { label: s.label, stroke: color, fill: color, width: 0, points: { show: false }, paths: U.paths.bars({ size: [0.5, 90], align: 0 }) };
      }),
    ],
    hooks: {
      draw: [(u) => labelBars(u, [xs, totals], yFormat)],
    },
  }, data, el);
  const unfollow = follow(el, u);
  return { u, destroy() { unfollow(); u.destroy(); } };
}

// Writes each bar's value above it (series 1..n of ``data``).
function labelBars(u, data, yFormat) {
  const ctx = u.ctx;
  ctx.save();
  ctx.font = `${Math.round(11 * devicePixelRatio)}px system-ui, sans-serif`;
  ctx.fillStyle = "#374151";
  ctx.textAlign = "center";
  ctx.textBaseline = "bottom";
  for (let si = 1; si < data.length; si++) {
    if (u.series[si] && u.series[si].show === false) continue;
    const ys = data[si];
    for (let i = 0; i < ys.length; i++) {
      const v = ys[i];
      if (v === null || v === undefined) continue;
      const x = u.valToPos(data[0][i], "x", true);
      const y = u.valToPos(v, "y", true);
      ctx.fillText(yFormat(v), x, y - 3 * devicePixelRatio);
    }
  }
  ctx.restore();
}

export { fmtCompact };
