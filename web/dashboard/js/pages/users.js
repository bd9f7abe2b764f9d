// Users: search by id, and a profile with traits, groups, segments, engagement,
// events, messages (with their status history) and the decision trace.
import { get, qs } from "../api.js";
import { timeChart } from "../charts.js";
import {
  badge, cardHead, compactJson, debounce, empty, failure, fmtMs, fmtNumber, fmtTime, h, json, kv, loading,
  replace, statusCell, table, timeEl, toggleDetail,
} from "../dom.js";

const DAY = 86400000;

export async function render(root, parts, query) {
  if (parts.length) return profile(root, parts[0]);
  return search(root, query);
}

// ---------------------------------------------------------------- search

async function search(root, query) {
  const input = h("input", { type: "search", placeholder: "User id starts with…", value: query.get("q") || "", "aria-label": "Search users by id", style: "min-width:320px" });
  const results = h("div", {}, loading());
  const more = h("button", { class: "btn", type: "button", hidden: true }, "Load more");
  root.append(
    h("div", { class: "topbar" }, h("h1", {}, "Users")),
    h("section", { class: "card" },
      h("form", { class: "row", style: "margin-bottom:12px", onsubmit: (e) => { e.preventDefault(); const v = input.value.trim(); if (v) location.hash = "#/users/" + encodeURIComponent(v); } },
        input, h("button", { class: "btn primary", type: "submit" }, "Open user"), h("span", { class: "muted small" }, "Enter an exact id to open it; results update as you type.")),
      results, h("div", { class: "row", style: "margin-top:10px" }, more)));

  let rows = [];
  let next = null;
  let seq = 0;
  async function load(append) {
    const mine = ++seq;
    const q = input.value.trim();
    try {
      const body = await get("/v1/users" + qs({ query: q, limit: 50, after: append ? next : null }));
      if (mine !== seq) return;
      rows = append ? rows.concat(body.users) : body.users;
      next = body.next_after;
      more.hidden = !next;
      if (!rows.length) {
        replace(results, empty(q ? `No user id starts with “${q}”.` : "No users yet. Identify one with POST /v1/identify."));
        return;
      }
      replace(results, table([
        { label: "User id", cell: (u) => h("a", { href: "#/users/" + encodeURIComponent(u.user_id) }, u.user_id) },
        { label: "Email", cell: (u) => u.traits.email || "" },
        { label: "Name", cell: (u) => u.traits.name || "" },
        { label: "Traits", cell: (u) => h("span", { class: "mono small muted" }, compactJson(u.traits, 90)) },
        { label: "Last seen", cell: (u) => timeEl(u.last_seen_at) },
      ], rows, { onRow: (u) => (location.hash = "#/users/" + encodeURIComponent(u.user_id)) }));
    } catch (err) {
      if (mine === seq) replace(results, failure("User search", err));
    }
  }
  input.addEventListener("input", debounce(() => load(false), 200));
  more.addEventListener("click", () => load(true));
  await load(false);
  input.focus();
}

// ---------------------------------------------------------------- profile

async function profile(root, userId) {
  const head = h("div", { class: "topbar" }, h("a", { href: "#/users", class: "crumbs" }, "Users"), h("span", { class: "crumbs" }, "/"), h("h1", {}, userId));
  root.append(head);
  let user;
  try {
    user = await get("/v1/users/" + encodeURIComponent(userId));
  } catch (err) {
    root.append(err.status === 404 ? h("div", { class: "banner warn" }, `No user “${userId}”: nothing was tracked or identified for this id.`) : failure("Users", err));
    return;
  }
  const charts = [];
  const engagementEl = h("div", { "data-panel": "engagement" }, loading());
  const eventsEl = h("div", { "data-panel": "events" }, loading());
  const messagesEl = h("div", { "data-panel": "messages" }, loading());
  const traceEl = h("div", { "data-panel": "journal" }, loading());
  const segments = user.segments || [];

  root.append(
    h("div", { class: "grid cols-3", style: "margin-bottom:16px" },
      h("section", { class: "card" }, cardHead("Profile"), h("dl", { class: "kv" },
        h("dt", {}, "User id"), h("dd", { class: "mono" }, user.user_id),
        h("dt", {}, "First seen"), h("dd", {}, fmtTime(user.created_at)),
        h("dt", {}, "Last seen"), h("dd", {}, fmtTime(user.last_seen_at)),
        h("dt", {}, "Preferences"), h("dd", { class: "mono small" }, compactJson(user.preferences || {}, 200)))),
      h("section", { class: "card", "data-panel": "traits" }, cardHead("Traits"), kv(user.traits)),
      h("section", { class: "card" },
        cardHead("Groups"), user.groups && user.groups.length
          ? h("ul", { class: "stack", style: "list-style:none;margin:0;padding:0" }, user.groups.map((g) => h("li", {}, h("strong", {}, g.group_id), " ", h("span", { class: "mono small muted" }, compactJson(g.traits, 80)))))
          : empty("In no group."),
        h("h3", { style: "margin-top:14px" }, "Segments"),
        h("div", { "data-panel": "segments" }, segments.length ? segments.map((s) => h("a", { class: "chip", href: "#/segments/" + encodeURIComponent(typeof s === "string" ? s : s.segment_id || s.id) }, typeof s === "string" ? s : s.name || s.segment_id || s.id)) : h("span", { class: "muted small" }, "In no segment.")))),
    h("section", { class: "card", style: "margin-bottom:16px" }, cardHead("Engagement", h("span", { class: "legend-note" }, "events per day, with the user's own baseline and recent level")), engagementEl),
    h("div", { class: "grid wide-narrow" },
      h("div", { class: "grid" },
        h("section", { class: "card" }, cardHead("Messages"), messagesEl),
        h("section", { class: "card" }, cardHead("Decision trace", h("span", { class: "legend-note" }, "why something happened — or did not")), traceEl)),
      h("section", { class: "card" }, cardHead("Event timeline"), eventsEl)));

  // Events first: the engagement chart is drawn from the latest 1,000.
  const eventList = h("ol", { class: "timeline", "data-list": "events" });
  const moreEvents = h("button", { class: "btn small", type: "button" }, "Older events");
  let events = [];
  let shown = 0;
  let nextBefore = null;
  const showMore = async () => {
    if (shown >= events.length && nextBefore) {
      const page = await get(`/v1/users/${encodeURIComponent(userId)}/events` + qs({ limit: 100, before: nextBefore }));
      events = events.concat(page.events);
      nextBefore = page.next_before;
    }
    for (const e of events.slice(shown, shown + 100)) {
      const data = e.type === "identify" || e.type === "group" ? e.traits : e.properties;
      eventList.append(h("li", {}, h("div", { class: "when" }, fmtTime(e.timestamp)),
        h("div", { class: "what" }, e.event || e.type, " ", e.event ? h("span", { class: "badge" }, e.type) : null),
        Object.keys(data || {}).length ? h("pre", { class: "small" }, compactJson(data, 300)) : null));
    }
    shown = Math.min(events.length, shown + 100);
    moreEvents.hidden = shown >= events.length && !nextBefore;
  };
  moreEvents.addEventListener("click", async () => {
    moreEvents.disabled = true;
    try {
      await showMore();
    } catch (err) {
      eventsEl.append(failure("Events", err));
    } finally {
      moreEvents.disabled = false;
    }
  });
  try {
    const page = await get(`/v1/users/${encodeURIComponent(userId)}/events?limit=1000`);
    events = page.events;
    nextBefore = page.next_before;
    if (!events.length) replace(eventsEl, empty("No events."));
    else {
      await showMore();
      replace(eventsEl, h("div", { style: "max-height:900px;overflow:auto" }, eventList), h("div", { class: "row", style: "margin-top:8px" }, moreEvents));
    }
  } catch (err) {
    replace(eventsEl, failure("Events", err));
  }
  charts.push(...engagement(engagementEl, user.engagement, events.slice(0, 1000)));

  // Messages with their history.
  get(`/v1/users/${encodeURIComponent(userId)}/messages`).then(
    (body) => {
      const list = body.messages || [];
      if (!list.length) return replace(messagesEl, empty("No messages sent to this user."));
      replace(messagesEl, table([
        { label: "Created", cell: (m) => timeEl(m.created_at) },
        { label: "Channel", cell: (m) => m.channel },
        { label: "Template", cell: (m) => m.template_id },
        { label: "Status", cell: (m) => statusCell(m) },
        { label: "To trigger", cell: (m) => fmtMs(m.time_to_trigger_ms) },
      ], list, { onRow: (m, tr) => toggleDetail(tr, 5, () => messageHistory(m)) }));
    },
    (err) => replace(messagesEl, failure("Messages", err)),
  );

  // The decision trace.
  get(`/v1/users/${encodeURIComponent(userId)}/journal`).then(
    (body) => {
      const entries = Array.isArray(body) ? body : body.journal || body.entries || body.trace || [];
      if (!entries.length) return replace(traceEl, empty("No decisions recorded for this user yet."));
      replace(traceEl, table([
        { label: "When", cell: (j) => h("span", { class: "nowrap" }, fmtTime(j.at || j.timestamp || j.time)) },
        { label: "Automation", cell: (j) => (j.automation_id ? h("a", { href: "#/automations/" + encodeURIComponent(j.automation_id) }, j.automation_id) : "–") },
        { label: "Decision", cell: (j) => badge(kindClass(j.kind), j.kind || j.decision || j.event || "–") },
        { label: "Detail", cell: (j) => h("span", { class: "small" }, detailText(j.detail ?? j.reason)) },
        { label: "Run", cell: (j) => h("span", { class: "mono small muted" }, j.run_id || "") },
      ], entries));
    },
    (err) => replace(traceEl, failure("The decision trace", err)),
  );

  return () => charts.forEach((c) => c.destroy());
}

function detailText(detail) {
  if (detail === null || detail === undefined || detail === "" || detail === '""') return "";
  return typeof detail === "string" ? detail : compactJson(detail, 240);
}

function kindClass(kind) {
  const k = String(kind || "");
  if (/held|holdout|skip|cap|suppress|defer|quiet/.test(k)) return "suppressed";
  if (/exit|goal|complet/.test(k)) return "completed";
  if (/fail|error/.test(k)) return "failed";
  if (/sent|send|deliver/.test(k)) return "sent";
  return "active";
}

export function messageHistory(m) {
  const rendered = m.rendered && Object.keys(m.rendered).length ? h("div", {}, h("h3", { style: "margin-top:10px" }, "Rendered"), h("pre", { class: "small" }, json(m.rendered))) : null;
  return h("div", { class: "grid cols-2" },
    h("div", {}, h("h3", {}, "Status history"), h("ol", { class: "timeline", "data-list": "history" }, (m.history || []).map((s) =>
      h("li", {}, h("div", { class: "when" }, fmtTime(s.at)), h("div", { class: "what" }, badge(s.status)), s.detail ? h("div", { class: "small muted" }, s.detail) : null)))),
    h("div", {}, h("h3", {}, "Message"), h("dl", { class: "kv" },
      h("dt", {}, "Id"), h("dd", { class: "mono" }, m.message_id),
      h("dt", {}, "User"), h("dd", {}, h("a", { href: "#/users/" + encodeURIComponent(m.user_id) }, m.user_id)),
      h("dt", {}, "Template"), h("dd", {}, m.template_id),
      h("dt", {}, "Automation"), h("dd", {}, m.automation_id || "–"),
      h("dt", {}, "Category"), h("dd", {}, m.category || "–"),
      h("dt", {}, "Variables"), h("dd", { class: "mono small" }, compactJson(m.variables || {}, 300))), rendered));
}

// Events per day over the baseline and recent windows (28 + 7 days), with the
// profile's baseline and recent levels drawn across their windows.
function engagement(el, eng, events) {
  const today = Math.floor(Date.now() / DAY);
  const days = 35;
  const counts = new Map();
  for (const e of events) {
    const d = Math.floor(Date.parse(e.timestamp) / DAY);
    counts.set(d, (counts.get(d) || 0) + 1);
  }
  const xs = [];
  const perDay = [];
  const base = [];
  const recent = [];
  for (let d = today - days + 1; d <= today; d++) {
    xs.push(d * DAY / 1000 + 43200);
    perDay.push(counts.get(d) || 0);
    const inRecent = d > today - 7;
    base.push(eng && !inRecent ? eng.baseline ?? null : null);
    recent.push(eng && inRecent ? eng.recent ?? null : null);
  }
  const summary = eng
    ? h("div", { class: "row", style: "margin-bottom:8px", "data-engagement-state": eng.state || "" },
      badge(eng.state === "below_baseline" ? "failed" : eng.state === "above_baseline" ? "delivered" : "queued", (eng.state || "unknown").replace(/_/g, " ")),
      h("span", { class: "small" }, `baseline ${fmtNumber(eng.baseline, 2)}/day · recent ${fmtNumber(eng.recent, 2)}/day · ratio ${eng.ratio === null || eng.ratio === undefined ? "–" : fmtNumber(eng.ratio, 2)}`),
      eng.active_days !== undefined ? h("span", { class: "small muted" }, `${eng.active_days} active days in the baseline window`) : null)
    : h("div", { class: "small muted", style: "margin-bottom:8px" }, "No engagement baseline on this profile yet (computed by the engine from daily activity).");
  const chartEl = h("div", { class: "chart", "data-chart": "engagement" });
  replace(el, summary, chartEl, events.length >= 1000 ? h("div", { class: "note" }, "Bars count the latest 1,000 events.") : null);
  return [timeChart(chartEl, {
    series: [
      { label: "events per day", color: "#a5b4fc", bars: true },
      { label: "baseline (per day)", color: "#6b7280", dash: [6, 4], width: 2 },
      { label: "recent (per day)", color: "#4f46e5", width: 3 },
    ],
    data: [xs, perDay, base, recent],
    height: 200,
  })];
}
