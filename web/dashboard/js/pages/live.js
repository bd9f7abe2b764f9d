// Live events: every committed event as it happens (WebSocket), filterable.
import { live } from "../api.js";
import { compactJson, empty, fmtClock, fmtNumber, h, json, replace, userLink } from "../dom.js";

const KEEP = 500;
const TYPES = ["", "track", "identify", "page", "screen", "group", "alias"];

export async function render(root, _parts, query) {
  const events = []; // newest first
  let paused = false;
  let seen = 0;
  const text = h("input", { type: "search", placeholder: "Filter: event name, user id or property…", value: query.get("q") || "", "aria-label": "Filter events", style: "min-width:280px" });
  const type = h("select", { "aria-label": "Event type" }, TYPES.map((t) => h("option", { value: t }, t || "all types")));
  const user = h("input", { type: "search", placeholder: "User id", value: query.get("user") || "", "aria-label": "User id", style: "width:160px" });
  const pause = h("button", { class: "btn", type: "button" }, "Pause");
  const clearBtn = h("button", { class: "btn", type: "button" }, "Clear");
  const state = h("span", { class: "pill" }, "connecting");
  const counter = h("span", { class: "muted small" }, "");
  const body = h("tbody", {});
  const list = h("div", { class: "table-wrap", style: "max-height: calc(100vh - 220px)" },
    h("table", { class: "data", "data-table": "live-events" },
      h("thead", {}, h("tr", {}, h("th", {}, "Received"), h("th", {}, "Type"), h("th", {}, "Event"), h("th", {}, "User"), h("th", {}, "Properties / traits"))),
      body));
  const emptyEl = empty("Waiting for events… Track one with POST /v1/track or the browser SDK.");

  root.append(
    h("div", { class: "topbar" }, h("h1", {}, "Live events"), h("span", { class: "spacer" }), counter, state),
    h("section", { class: "card" },
      h("div", { class: "row", style: "margin-bottom:12px" }, text, type, user, pause, clearBtn),
      list, emptyEl));

  function matches(e) {
    if (type.value && e.type !== type.value) return false;
    const u = user.value.trim();
    if (u && !String(e.user_id || "").startsWith(u) && !String(e.anonymous_id || "").startsWith(u)) return false;
    const q = text.value.trim().toLowerCase();
    if (!q) return true;
    return [e.event, e.user_id, e.anonymous_id, e.type, JSON.stringify(e.properties), JSON.stringify(e.traits)]
      .some((v) => v && String(v).toLowerCase().includes(q));
  }

  function row(e) {
    const data = e.type === "identify" || e.type === "group" ? e.traits : e.properties;
    const tr = h("tr", { class: "clickable", tabindex: "0", "data-event": e.event || e.type },
      h("td", { class: "nowrap mono" }, fmtClock(e.received_at)),
      h("td", {}, h("span", { class: "badge" }, e.type)),
      h("td", {}, e.event || h("span", { class: "muted" }, "–")),
      h("td", {}, e.user_id ? userLink(e.user_id) : h("span", { class: "muted", title: "anonymous id" }, e.anonymous_id ? "anon " + e.anonymous_id.slice(0, 8) : "–")),
      h("td", { class: "mono ellipsis" }, compactJson(data || {}, 160)));
    const toggle = () => {
      const next = tr.nextElementSibling;
      if (next && next.classList.contains("detail")) next.remove();
      else tr.after(h("tr", { class: "detail" }, h("td", { colspan: "5" }, h("pre", {}, json(e)))));
    };
    tr.addEventListener("click", (ev) => !ev.target.closest("a") && toggle());
    tr.addEventListener("keydown", (ev) => ev.key === "Enter" && toggle());
    return tr;
  }

  function redraw() {
    const shown = events.filter(matches).slice(0, 200);
    replace(body, shown.map(row));
    emptyEl.hidden = shown.length > 0;
    emptyEl.textContent = events.length ? "No event matches the filter." : "Waiting for events… Track one with POST /v1/track or the browser SDK.";
    counter.textContent = `${fmtNumber(seen)} received · ${fmtNumber(shown.length)} shown`;
  }

  function add(list) {
    for (const e of list) events.unshift(e);
    if (events.length > KEEP) events.length = KEEP;
  }

  add(live.recent);
  seen = live.recent.length;
  redraw();
  let scheduled = false;
  const unsubscribe = live.subscribe(
    (frame) => {
      if (frame.type === "hello") {
        events.length = 0;
        seen = 0;
        return;
      }
      if (frame.type !== "events") return;
      seen += frame.count || frame.events.length;
      if (paused) return;
      add(frame.events);
      if (!scheduled) {
        scheduled = true;
        requestAnimationFrame(() => {
          scheduled = false;
          redraw();
        });
      }
    },
    (s) => {
      state.className = "pill " + (s === "live" ? "live" : s === "reconnecting" ? "down" : "");
      state.textContent = s;
    },
  );

  for (const el of [text, user]) el.addEventListener("input", redraw);
  type.addEventListener("change", redraw);
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    if (!paused) redraw();
  });
  clearBtn.addEventListener("click", () => {
    events.length = 0;
    redraw();
  });
  return unsubscribe;
}
