// Reading the analytics, report and segment answers into one shape each, and
// computing the same figures from the message log when the daemon has no
// analytics endpoint.

export const STATUSES = ["queued", "sent", "delivered", "opened", "clicked", "failed", "bounced", "suppressed"];
export const CHANNELS = ["email", "push", "in_app"];

const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);

function firstCollection(body, names) {
  if (Array.isArray(body)) return body;
  if (!isObj(body)) return null;
  for (const n of names) if (body[n] !== undefined && (Array.isArray(body[n]) || isObj(body[n]))) return body[n];
  return null;
}

function countsOf(item) {
  for (const k of ["current", "counts", "by_status", "statuses", "status"]) if (isObj(item[k])) return pickNumbers(item[k]);
  const out = {};
  for (const s of STATUSES) if (num(item[s]) !== null) out[s] = item[s];
  return out;
}

function pickNumbers(obj) {
  const out = {};
  for (const [k, v] of Object.entries(obj)) if (num(v) !== null) out[k] = v;
  return out;
}

// -> [{key, counts: {status: n}, total, rates: {...}}]
export function messageGroups(body, groupBy) {
  const coll = firstCollection(body, ["groups", "rows", "results", "data", "items", "by_" + groupBy, groupBy + "s", groupBy]);
  if (!coll) return [];
  const entries = Array.isArray(coll)
    ? coll.map((item) => [item[groupBy] ?? item[groupBy + "_id"] ?? item.key ?? item.group ?? item.value ?? item.name ?? item.id, item])
    : Object.entries(coll);
  return entries
    .filter(([, item]) => isObj(item))
    .map(([key, item]) => {
      const counts = countsOf(item);
      const total = num(item.messages) ?? num(item.total) ?? Object.values(counts).reduce((a, b) => a + b, 0);
      const rates = isObj(item.rates) ? pickNumbers(item.rates) : {};
      for (const r of ["delivery_rate", "open_rate", "click_rate", "unsubscribe_rate"]) if (num(item[r]) !== null) rates[r.replace("_rate", "")] = item[r];
      return { key: key === null || key === undefined ? "(none)" : String(key), counts, total, rates };
    });
}

// Same shape, computed from messages as GET /v1/messages returns them.
export function groupsFromMessages(messages, groupBy) {
  const by = new Map();
  for (const m of messages) {
    const key = String(m[groupBy === "template" ? "template_id" : groupBy === "automation" ? "automation_id" : "channel"] ?? "(none)");
    if (!by.has(key)) by.set(key, { key, counts: {}, total: 0, rates: {} });
    const g = by.get(key);
    g.counts[m.status] = (g.counts[m.status] || 0) + 1;
    g.total++;
  }
  // The daemon's definitions: delivered = sent|delivered|opened|clicked now,
  // attempted = those plus failed|bounced.
  for (const g of by.values()) {
    const c = (list) => list.reduce((a, x) => a + (g.counts[x] || 0), 0);
    const delivered = c(["sent", "delivered", "opened", "clicked"]);
    const attempted = delivered + c(["failed", "bounced"]);
    g.rates.delivery = attempted ? delivered / attempted : null;
    g.rates.open = delivered ? c(["opened", "clicked"]) / delivered : null;
    g.rates.click = delivered ? c(["clicked"]) / delivered : null;
  }
  return [...by.values()];
}

function msValue(obj, name) {
  for (const [k, factor] of [[name + "_ms", 1], [name, 1], [name + "_s", 1000], [name + "_seconds", 1000]]) {
    if (num(obj[k]) !== null) return obj[k] * factor;
  }
  return null;
}

function histogramOf(item) {
  const raw = item.histogram ?? item.buckets ?? item.hist;
  if (!raw) return [];
  if (isObj(raw) && Array.isArray(raw.counts)) {
    const edges = raw.le_ms || raw.bounds_ms || raw.edges_ms || raw.buckets || raw.le || [];
    return raw.counts.map((c, i) => ({ le: num(edges[i]), count: c }));
  }
  if (!Array.isArray(raw)) return [];
  return raw.map((b) => {
    if (Array.isArray(b)) return { le: num(b[0]), count: num(b[1]) ?? 0 };
    const le = msValue(b, "le") ?? msValue(b, "upper") ?? msValue(b, "max") ?? msValue(b, "to") ?? null;
    return { le, label: b.label || b.bucket || null, count: num(b.count) ?? num(b.n) ?? 0 };
  });
}

// -> [{channel, p50, p90, p99, count, histogram: [{le, label, count}]}] (milliseconds)
export function timeToTrigger(body) {
  const coll = firstCollection(body, ["channels", "by_channel", "groups", "rows", "results", "data"]);
  let entries;
  if (coll) {
    entries = Array.isArray(coll) ? coll.map((c) => [c.channel ?? c.key ?? c.group ?? "all", c]) : Object.entries(coll);
  } else if (isObj(body)) {
    entries = [["all", body]];
  } else {
    entries = [];
  }
  return entries
    .filter(([, item]) => isObj(item))
    .map(([channel, item]) => {
      const p = isObj(item.percentiles) ? item.percentiles : item;
      return {
        channel: String(channel),
        p50: msValue(p, "p50"),
        p90: msValue(p, "p90"),
        p99: msValue(p, "p99"),
        count: num(item.count) ?? num(item.messages) ?? num(item.n),
        histogram: histogramOf(item),
      };
    });
}

export function quantile(sorted, q) {
  if (!sorted.length) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

export const TTT_BUCKETS = [10, 50, 100, 250, 500, 1000, 5000, 30000, 300000];

export function tttFromMessages(messages) {
  const by = new Map();
  for (const m of messages) {
    if (typeof m.time_to_trigger_ms !== "number") continue;
    if (!by.has(m.channel)) by.set(m.channel, []);
    by.get(m.channel).push(m.time_to_trigger_ms);
  }
  return [...by.entries()].map(([channel, values]) => {
    values.sort((a, b) => a - b);
    const histogram = TTT_BUCKETS.map((le) => ({ le, count: 0 })).concat([{ le: null, count: 0 }]);
    for (const v of values) {
      const b = histogram.find((x) => x.le === null || v <= x.le);
      b.count++;
    }
    return { channel, p50: quantile(values, 0.5), p90: quantile(values, 0.9), p99: quantile(values, 0.99), count: values.length, histogram };
  });
}

// ---------------------------------------------------------------- holdout report

function group(body, names) {
  for (const n of names) {
    if (isObj(body[n])) return body[n];
  }
  if (isObj(body.groups)) for (const n of names) if (isObj(body.groups[n])) return body.groups[n];
  return null;
}

function groupStats(g, prefix, body) {
  const src = g || {};
  const users = num(src.users) ?? num(src.n) ?? num(body[prefix + "_users"]);
  const converted = num(src.converted) ?? num(src.conversions) ?? num(body[prefix + "_conversions"]) ?? num(body[prefix + "_converted"]);
  let rate = num(src.rate) ?? num(src.conversion_rate) ?? num(body[prefix + "_rate"]);
  if (rate === null && users) rate = converted / users;
  return { users, converted, rate, retained: isObj(src.retained) ? src.retained : isObj(src.retention) ? src.retention : null };
}

// -> {treated, holdout, lift, ciLow, ciHigh, pValue, verdict, explanation, retention: [{day, treated, holdout}]}
export function liftReport(body) {
  const b = isObj(body) ? body : {};
  const inner = isObj(b.report) ? b.report : b;
  const treated = groupStats(group(inner, ["treated", "treatment"]), "treated", isObj(inner.lift) ? { ...inner, ...inner.lift } : inner);
  const holdout = groupStats(group(inner, ["holdout", "held_out", "control"]), "holdout", isObj(inner.lift) ? { ...inner, ...inner.lift } : inner);
  const L = isObj(inner.lift) ? inner.lift : inner;
  const ci = Array.isArray(L.ci) ? L.ci : Array.isArray(L.confidence_interval) ? L.confidence_interval : isObj(L.ci) ? [L.ci.low, L.ci.high] : [L.ci_low, L.ci_high];
  const lift = num(L.absolute_lift) ?? num(L.lift) ?? num(L.absolute) ?? (typeof inner.lift === "number" ? inner.lift : null);
  const retention = [];
  const R = inner.retention ?? inner.retained;
  if (isObj(R)) {
    for (const [day, v] of Object.entries(R)) {
      if (!isObj(v)) continue;
      const t = isObj(v.treated) ? v.treated.rate ?? null : num(v.treated);
      const hd = isObj(v.holdout) ? v.holdout.rate ?? null : num(v.holdout);
      retention.push({ day: String(day).replace(/^day_?/, ""), treated: t, holdout: hd });
    }
  } else if (Array.isArray(R)) {
    for (const v of R) if (isObj(v)) retention.push({ day: String(v.day ?? v.days ?? ""), treated: num(v.treated_rate) ?? (isObj(v.treated) ? v.treated.rate : num(v.treated)), holdout: num(v.holdout_rate) ?? (isObj(v.holdout) ? v.holdout.rate : num(v.holdout)) });
  }
  for (const [day, key] of [["7", "d7"], ["14", "d14"], ["30", "d30"]]) {
    if (retention.some((r) => r.day === day)) continue;
    const t = treated.retained && (treated.retained[day] ?? treated.retained[key] ?? treated.retained["day_" + day]);
    const hd = holdout.retained && (holdout.retained[day] ?? holdout.retained[key] ?? holdout.retained["day_" + day]);
    if (t !== undefined || hd !== undefined) retention.push({ day, treated: isObj(t) ? t.rate ?? null : num(t), holdout: isObj(hd) ? hd.rate ?? null : num(hd) });
  }
  return {
    treated,
    holdout,
    lift,
    ciLow: num(ci[0]),
    ciHigh: num(ci[1]),
    pValue: num(L.p_value) ?? num(inner.p_value),
    verdict: String(inner.verdict ?? L.verdict ?? ""),
    explanation: String(inner.explanation ?? L.explanation ?? ""),
    retention,
  };
}

export function verdictClass(verdict) {
  const v = verdict.toLowerCase();
  if (v.includes("not enough")) return "wait";
  if (v.includes("positive")) return "positive";
  if (v.includes("negative")) return "negative";
  return "neutral";
}

// ---------------------------------------------------------------- segments

// -> [{at: ms, count}] from GET /v1/segments/{id}/counts
export function segmentCounts(body) {
  const coll = firstCollection(body, ["counts", "points", "series", "history", "data"]);
  if (!coll) return [];
  const rows = Array.isArray(coll) ? coll : Object.entries(coll).map(([at, count]) => ({ at, count }));
  return rows
    .map((r) => {
      if (Array.isArray(r)) return { at: Date.parse(r[0]) || num(r[0]), count: num(r[1]) };
      const at = r.at ?? r.time ?? r.timestamp ?? r.day ?? r.date ?? r.bucket;
      return { at: typeof at === "number" ? at : Date.parse(at), count: num(r.count) ?? num(r.members) ?? num(r.value) ?? num(r.size), entered: num(r.entered), exited: num(r.exited) };
    })
    .filter((r) => Number.isFinite(r.at) && r.count !== null)
    .sort((a, b) => a.at - b.at);
}

export function listOf(body, names) {
  const coll = firstCollection(body, names);
  if (Array.isArray(coll)) return coll;
  if (isObj(coll)) return Object.entries(coll).map(([id, v]) => (isObj(v) ? { id, ...v } : { id, value: v }));
  return [];
}
