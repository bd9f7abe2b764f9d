// Segments: the list, and per segment its definition, member counts over time
// and members.
import { get, put, qs } from "../api.js";
import { timeChart } from "../charts.js";
import { cardHead, compactJson, empty, errorBanner, failure, fmtNumber, h, json, loading, replace, table, timeEl, userLink } from "../dom.js";
import { listOf, segmentCounts } from "../normalize.js";

export async function render(root, parts) {
  if (parts.length) return detail(root, parts[0]);
  return list(root);
}

function idOf(s) {
  return s.segment_id ?? s.id;
}

function memberCount(s) {
  for (const k of ["members", "member_count", "count", "size"]) if (typeof s[k] === "number") return s[k];
  return null;
}

async function list(root) {
  const out = h("div", {}, loading());
  root.append(h("div", { class: "topbar" }, h("h1", {}, "Segments")), h("section", { class: "card" }, out));
  let rows;
  try {
    rows = listOf(await get("/v1/segments"), ["segments", "items", "data"]);
  } catch (err) {
    replace(out, failure("Segments", err));
    return;
  }
  if (!rows.length) return replace(out, empty("No segments yet. Define one with PUT /v1/segments/{id} or `retenshund apply`."));
  replace(out, table([
    { label: "Segment", cell: (s) => h("a", { href: "#/segments/" + encodeURIComponent(idOf(s)) }, h("strong", {}, s.name || idOf(s)), h("div", { class: "small muted mono" }, idOf(s))) },
    { label: "Definition", cell: (s) => h("span", { class: "small" }, describe(s.condition)) },
    { label: "Members", class: "right", cell: (s) => fmtNumber(memberCount(s)) },
    { label: "Updated", cell: (s) => timeEl(s.updated_at) },
  ], rows, { onRow: (s) => (location.hash = "#/segments/" + encodeURIComponent(idOf(s))) }));
}

// A condition in words: {"all": [...]} -> "all of (...)".
export function describe(c) {
  if (!c || typeof c !== "object") return "–";
  if (Array.isArray(c.all)) return c.all.map(describe).join(" and ");
  if (Array.isArray(c.any)) return "(" + c.any.map(describe).join(" or ") + ")";
  if (c.not) return "not " + describe(c.not);
  if (c.trait) return c.op === "exists" ? `${c.trait} is set` : `${c.trait} ${c.op || "eq"} ${JSON.stringify(c.value)}`;
  if (c.event && c.not_within) return `no ${c.event} in ${c.not_within}`;
  if (c.event) return `${c.event} ${c.count ? Object.entries(c.count).map(([op, n]) => `${op} ${n}`).join(", ") + " times" : "happened"}${c.within ? " in " + c.within : ""}`;
  if (c.engagement) return `engagement ${c.engagement.replace(/_/g, " ")}${c.ratio !== undefined ? ` (ratio ${c.ratio})` : ""}`;
  return compactJson(c, 80);
}

function tree(c) {
  if (!c || typeof c !== "object") return h("span", {}, "–");
  for (const op of ["all", "any"]) {
    if (Array.isArray(c[op])) return h("div", {}, h("span", { class: "op" }, op === "all" ? "all of" : "any of"), h("ul", {}, c[op].map((x) => h("li", {}, tree(x)))));
  }
  if (c.not) return h("div", {}, h("span", { class: "op" }, "not"), h("ul", {}, h("li", {}, tree(c.not))));
  return h("span", {}, describe(c));
}

async function detail(root, id) {
  root.append(h("div", { class: "topbar" }, h("a", { href: "#/segments", class: "crumbs" }, "Segments"), h("span", { class: "crumbs" }, "/"), h("h1", {}, id)));
  let seg;
  try {
    seg = await get("/v1/segments/" + encodeURIComponent(id));
  } catch (err) {
    root.append(err.status === 404 && !err.unavailable ? h("div", { class: "banner warn" }, `No segment “${id}”.`) : failure("Segments", err));
    return;
  }
  const charts = [];
  const countsEl = h("div", { "data-panel": "counts" }, loading());
  const membersEl = h("div", { "data-panel": "members" }, loading());
  const banner = h("div", {});
  const editor = h("textarea", { rows: "10", "aria-label": "Segment definition (JSON)" }, json({ name: seg.name, condition: seg.condition }));
  const saveBtn = h("button", { class: "btn", type: "button" }, "Save definition");
  saveBtn.addEventListener("click", async () => {
    let body;
    try {
      body = JSON.parse(editor.value);
    } catch (e) {
      replace(banner, errorBanner(new Error("Not valid JSON: " + e.message)));
      return;
    }
    try {
      await put("/v1/segments/" + encodeURIComponent(id), body);
      replace(banner, h("div", { class: "banner ok", role: "status" }, "Saved. Membership is re-evaluated as events arrive."));
    } catch (err) {
      replace(banner, errorBanner(err));
    }
  });
  const members = memberCount(seg);
  root.append(
    h("div", { class: "grid cols-2" },
      h("section", { class: "card", "data-panel": "definition" }, cardHead(seg.name || id, members !== null ? h("span", { class: "badge on" }, `${fmtNumber(members)} members`) : null),
        h("div", { class: "cond" }, tree(seg.condition)),
        h("details", { style: "margin-top:12px" }, h("summary", { class: "small muted" }, "Edit the definition"), banner, editor, h("div", { class: "row", style: "margin-top:8px" }, saveBtn))),
      h("section", { class: "card" }, cardHead("Members over time"), countsEl),
      h("section", { class: "card span-2" }, cardHead("Members"), membersEl)));

  get(`/v1/segments/${encodeURIComponent(id)}/counts`).then(
    (body) => {
      const points = segmentCounts(body);
      if (!points.length) return replace(countsEl, empty("No counts recorded yet."));
      const chartEl = h("div", { class: "chart", "data-chart": "segment-counts" });
      replace(countsEl, chartEl);
      const flows = points.some((p) => p.entered !== null || p.exited !== null);
      charts.push(timeChart(chartEl, {
        series: [
          { label: "members", color: "#4f46e5", fill: "rgba(79,70,229,0.12)" },
          ...(flows ? [{ label: "entered", color: "#10b981", bars: true, align: -1, barSize: 0.35 }, { label: "exited", color: "#ef4444", bars: true, align: 1, barSize: 0.35 }] : []),
        ],
        data: [points.map((p) => p.at / 1000 + 43200), points.map((p) => p.count), ...(flows ? [points.map((p) => p.entered ?? 0), points.map((p) => p.exited ?? 0)] : [])],
        height: 220,
        // At least two weeks wide, so a young segment's few days read as days.
        xRange: () => [Math.min(points[0].at, Date.now() - 14 * 86400000) / 1000, (Math.floor(Date.now() / 86400000) + 1) * 86400],
      }));
    },
    (err) => replace(countsEl, failure("Member counts", err)),
  );

  get(`/v1/segments/${encodeURIComponent(id)}/members` + qs({ limit: 200 })).then(
    (body) => {
      const rows = listOf(body, ["members", "users", "items", "data"]).map((m) => (typeof m === "string" ? { user_id: m } : m.value !== undefined && m.id ? { user_id: m.value } : m));
      if (!rows.length) return replace(membersEl, empty("Nobody is in this segment right now."));
      replace(membersEl, table([
        { label: "User", cell: (m) => userLink(m.user_id) },
        { label: "Since", cell: (m) => timeEl(m.entered_at || m.joined_at || m.since) },
      ], rows));
    },
    (err) => replace(membersEl, failure("Segment members", err)),
  );

  return () => charts.forEach((c) => c.destroy());
}
